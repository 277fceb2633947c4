-- annotations: auto-labels new annotations and publishes a per-slide summary.
--
-- (a) An annotation created with an empty label gets "<Class or Type> <n>"
--     (n counts per slide and per class/Type), written back with
--     cs.annot.update at the annotation's rev. On "conflict" it re-reads the
--     annotation and retries once if the label is still empty. Its own
--     updates (origin "annotations") are never auto-labelled again.
-- (b) It keeps, per slide, the count and total area_um2 of each class and
--     emits "annotations.summary" {slide, classes = {Tumor = {count, area_um2}}}
--     at most once per config.summary_ms per slide (trailing edge).
local labels = require("labels")

local NONE = "Unclassified"

local counters = {} -- slide -> base -> highest n used
local shapes = {}   -- slide -> id -> {class, area}
local pending = {}  -- slide -> timer of the next summary

local function own(meta)
  return meta.origin == cs.name or meta.origin == "plugin:" .. cs.name
end

local function class_of(a)
  return (type(a.class) == "string" and a.class ~= "") and a.class or NONE
end

local function area_of(a)
  local m = a.measure
  return type(m) == "table" and tonumber(m.area_um2) or 0
end

local function note_label(slide, label)
  local base, n = labels.split(label)
  if base then
    local c = counters[slide] or {}
    counters[slide] = c
    if n > (c[base] or 0) then
      c[base] = n
    end
  end
end

local function next_label(slide, base)
  local c = counters[slide] or {}
  counters[slide] = c
  c[base] = (c[base] or 0) + 1
  return base .. " " .. c[base]
end

local function summary(slide)
  local classes = {}
  for _, s in pairs(shapes[slide] or {}) do
    local c = classes[s.class] or {count = 0, area_um2 = 0}
    c.count = c.count + 1
    c.area_um2 = c.area_um2 + s.area
    classes[s.class] = c
  end
  return {slide = slide, classes = classes}
end

local function schedule(slide)
  if pending[slide] then
    return
  end
  pending[slide] = cs.after(cs.config.summary_ms or 200, function()
    pending[slide] = nil
    cs.emit("annotations.summary", summary(slide))
  end)
end

local function track(a)
  if type(a.slide) ~= "string" or type(a.id) ~= "string" then
    return
  end
  local s = shapes[a.slide] or {}
  shapes[a.slide] = s
  s[a.id] = {class = class_of(a), area = area_of(a)}
  note_label(a.slide, a.label)
end

local function write_label(id, label, rev)
  local req, err = cs.annot.update(id, {label = label}, rev)
  if not req then
    return nil, err
  end
  return cs.await(req)
end

local function autolabel(a)
  if not cs.config.autolabel or (a.label ~= nil and a.label ~= "") or a.type == "text" then
    return
  end
  local label = next_label(a.slide, labels.base(a))
  local ok, err = write_label(a.id, label, a.rev)
  if ok then
    return
  end
  if err == "conflict" then
    local cur = cs.annot.get(a.id)
    if cur and (cur.label == nil or cur.label == "") then
      ok, err = write_label(a.id, label, cur.rev)
      if ok then
        return
      end
    else
      return -- someone named it meanwhile, or it is gone
    end
  end
  cs.log.warn("could not label", a.id, err)
end

cs.on("annotation.created", function(a, meta)
  track(a)
  schedule(a.slide)
  if not own(meta) then
    autolabel(a)
  end
end)

cs.on("annotation.updated", function(a)
  track(a)
  schedule(a.slide)
end)

cs.on("annotation.deleted", function(d)
  local s = shapes[d.slide]
  if s and s[d.id] then
    s[d.id] = nil
    schedule(d.slide)
  end
end)

-- A slide opened: learn what is already there (counters and summary).
cs.on("image.opened", function(img)
  local slide = img.slide or img.id
  if type(slide) ~= "string" then
    return
  end
  local list, err = cs.annot.query(slide)
  if not list then
    cs.log.warn("query", slide, err)
    return
  end
  shapes[slide] = {}
  for _, a in ipairs(list) do
    track(a)
  end
  schedule(slide)
end)

function on_start(_, saved)
  if type(saved) == "table" then
    counters = saved.counters or counters
    shapes = saved.shapes or shapes
  end
end

function on_save()
  return {counters = counters, shapes = shapes}
end
