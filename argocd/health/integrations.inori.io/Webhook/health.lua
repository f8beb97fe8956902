-- Argo CD health check for integrations.inori.io/Webhook (Inori integrations operator).
--
-- Runs in Argo CD's Lua 5.1 (gopher-lua). A script set through argocd-cm gets only the base,
-- table and a reduced os library: no string or math library, so only base functions and the
-- ".." operator are used here. Every field may be absent, so every access is guarded.
--
--   no status, or status.observedGeneration behind metadata.generation  -> Progressing
--   phase Active                                                         -> Healthy
--   phase Suspended (spec.suspend is true)                               -> Suspended
--   phase Failing or Invalid                                             -> Degraded, with the
--                                                                          Ready condition's message
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

if phase == "Active" then
  hs.status = "Healthy"
  hs.message = text(ready.message, "Webhook is configured and accepting deliveries")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = text(ready.message, "spec.suspend is true: new deliveries are held")
elseif phase == "Failing" then
  hs.status = "Degraded"
  local failing = condition(status, "Failing") or {}
  hs.message = text(ready.message, text(failing.message, "A delivery to this Webhook exhausted its retries"))
elseif phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = text(ready.message, "The Webhook cannot be used as written (" .. text(ready.reason, "no reason given") .. ")")
end

return hs
