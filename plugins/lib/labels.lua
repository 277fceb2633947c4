-- labels: naming helpers shared by plugins (require "labels").
local M = {}

--- "ellipse" -> "Ellipse"
function M.capitalize(s)
  return (tostring(s):gsub("^%l", string.upper))
end

--- The base of an automatic label: the class when set, else the Type.
function M.base(a)
  if type(a.class) == "string" and a.class ~= "" then
    return a.class
  end
  return M.capitalize(a.type or "annotation")
end

--- "Tumor 12" -> "Tumor", 12 ; anything else -> nil
function M.split(label)
  if type(label) ~= "string" then
    return nil
  end
  local base, n = label:match("^(.-) (%d+)$")
  if not base or base == "" then
    return nil
  end
  return base, tonumber(n)
end

return M
