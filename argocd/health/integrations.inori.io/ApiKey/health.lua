-- Argo CD health check for integrations.inori.io/ApiKey (Inori integrations operator).
--
-- Runs in Argo CD's Lua 5.1 (gopher-lua). A script set through argocd-cm gets only the base,
-- table and a reduced os library: no string or math library, so only base functions and the
-- ".." operator are used here. Every field may be absent, so every access is guarded.
--
--   no status, or status.observedGeneration behind metadata.generation  -> Progressing
--   Ready=False for any reason but Revoked/Expired (SecretNameConflict,
--   KeyHashMissing, InvalidSpec, ...)                                    -> Degraded, its message
--   phase Active                                                         -> Healthy
--   phase Revoked or Expired (the key no longer verifies)                -> Degraded
local WAITING = "Waiting for the operator to reconcile"

local function text(value, fallback)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return fallback
end

local function condition(status, wanted)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == wanted then
      return c
    end
  end
  return nil
end

local hs = {status = "Progressing", message = WAITING}

local status = obj.status
if type(status) ~= "table" then
  return hs
end

local generation = nil
if type(obj.metadata) == "table" then
  generation = obj.metadata.generation
end
local observed = status.observedGeneration
if type(observed) ~= "number" then
  return hs
end
if type(generation) == "number" and observed < generation then
  return hs
end

local ready = condition(status, "Ready") or {}
local phase = status.phase

-- A problem that stops the key from being issued or verified; the phase may be absent or stale.
if ready.status == "False" and ready.reason ~= "Revoked" and ready.reason ~= "Expired" then
  hs.status = "Degraded"
  hs.message = text(ready.message, "The key is not usable (" .. text(ready.reason, "no reason given") .. ")")
  return hs
end

if phase == "Active" then
  hs.status = "Healthy"
  hs.message = text(ready.message, "the key is active")
elseif phase == "Revoked" then
  hs.status = "Degraded"
  hs.message = text(ready.message, "the key was revoked and no longer verifies")
elseif phase == "Expired" then
  hs.status = "Degraded"
  hs.message = text(ready.message, "the key expired and no longer verifies")
end

return hs
