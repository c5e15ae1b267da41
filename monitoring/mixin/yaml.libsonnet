// The rule files as YAML: the text std.manifestYamlDoc(v, indent_array_in_object=true,
// quote_keys=false) writes, in a fraction of its time. Debian's jsonnet 0.18 spends most
// of generate.sh's run in that function (its per-key check of quote_keys=false and its
// character-by-character string escaping, both written in jsonnet); here a string is
// escaped by the interpreter's own JSON writer (std.toString of a one-element array) and a
// key is checked against an object of the characters a bare key may have.
// generate.sh --check compares the output with the committed files byte for byte.
local bare = { [c]: true for c in std.stringChars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/.') };
local reserved = ['true', 'false', 'null', 'yes', 'no', 'on', 'off', 'y', 'n', '~'];

local quote(s) =
  local json = std.toString([s]);
  std.substr(json, 1, std.length(json) - 2);

local key(k) =
  if std.length(k) > 0
     && std.length(std.filter(function(c) !std.objectHas(bare, c), std.stringChars(k))) == 0
     && !std.member(reserved, std.asciiLower(k))
  then k
  else quote(k);

local nonEmpty(v) = (std.isArray(v) || std.isObject(v)) && std.length(v) > 0;

local manifest(v, indent) =
  if v == true then 'true'
  else if v == false then 'false'
  else if v == null then 'null'
  else if std.isNumber(v) then std.toString(v)
  else if std.isString(v) then
    if v == '' then '""'
    else if std.endsWith(v, '\n') then
      local lines = std.split(v, '\n');
      std.join('\n' + indent + '  ', ['|'] + lines[0:std.length(lines) - 1])
    else quote(v)
  else if std.isFunction(v) then error 'yaml.libsonnet: a function is not YAML'
  else if std.isArray(v) then
    if std.length(v) == 0 then '[]'
    else std.join('\n' + indent, [
      local inner = if nonEmpty(x) then indent + '  ' else indent;
      '-' + (if std.isArray(x) && std.length(x) > 0 then '\n' + inner else ' ') + manifest(x, inner)
      for x in v
    ])
  else if std.length(v) == 0 then '{}'
  else std.join('\n' + indent, [
    local x = v[k];
    local inner = if nonEmpty(x) then indent + '  ' else indent;
    key(k) + ':' + (if nonEmpty(x) then '\n' + inner else ' ') + manifest(x, inner)
    for k in std.objectFields(v)
  ]);

function(v) manifest(v, '')
