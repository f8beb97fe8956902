-- Argo CD health check for integrations.inori.io/IntegrationEvent (Inori integrations operator).
--
-- Runs in Argo CD's Lua 5.1 (gopher-lua). A script set through argocd-cm gets only the base,
-- table and a reduced os library: no string or math library, so only base functions, the ".."
-- operator and table.concat are used here. Every field may be absent, so every access is guarded.
--
--   no status, or status.observedGeneration behind metadata.generation  -> Progressing
--   phase Pending or Delivering                                          -> Progressing
--   phase Delivered (every matching Webhook got it, or none matched)     -> Healthy
--   phase Failed (at least one delivery exhausted its retries)           -> Degraded, naming the
--                                                                          Webhooks that failed
local WAITING = "Waiting for the operator to reconcile"

local function text(value, fallback)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return fallback
end

local function count(value)
  if type(value) == "number" then
    return tostring(value)
  end
  return "?"
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
local progress = count(status.succeeded) .. " of " .. count(status.total) .. " delivered so far"

if phase == "Pending" then
  hs.message = text(ready.message, progress)
elseif phase == "Delivering" then
  hs.message = text(ready.message, progress)
elseif phase == "Delivered" then
  hs.status = "Healthy"
  hs.message = text(ready.message, "delivered to " .. count(status.succeeded) .. " webhook(s)")
elseif phase == "Failed" then
  hs.status = "Degraded"
  local message = text(ready.message, count(status.failed) .. " of " .. count(status.total) .. " delivery(ies) failed after all retries")
  local failed = {}
  if type(status.deliveries) == "table" then
    for _, d in ipairs(status.deliveries) do
      if type(d) == "table" and d.state == "Failed" and type(d.webhook) == "string" then
        table.insert(failed, d.webhook)
      end
    end
  end
  if #failed > 0 then
    message = message .. "; failed webhooks: " .. table.concat(failed, ", ")
  end
  hs.message = message
end

return hs
