# Rewrites a talos.config= URL the way Talos does (talos.md §2.2): variables are substituted only inside query
# values (case-insensitive "${uuid}", "${serial}", "${mac}", "${hostname}", "${code}"), a query arg named "uuid"
# with an empty value gets the UUID, and the query is re-encoded as Go's url.Values.Encode does: keys sorted,
# values escaped like url.QueryEscape (so ':' becomes %3A). A variable without a value is left as its literal
# placeholder. The path is not substituted, but Go re-escapes it (a "${uuid}" in the path goes out as "$%7Buuid%7D"). Input: the URL on one line; -v uuid= serial= mac= hostname= code=.
# Output: the final URL, then one "missing NAME" line per used variable that had no value.
BEGIN {
  hex = "0123456789ABCDEF"
  for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i
  val["uuid"] = uuid; val["serial"] = serial; val["mac"] = mac; val["hostname"] = hostname; val["code"] = code
  nvars = split("uuid serial mac hostname code", names, " ")
}
function hexval(h) {
  h = toupper(h)
  return (index(hex, substr(h, 1, 1)) - 1) * 16 + index(hex, substr(h, 2, 1)) - 1
}
# url.QueryUnescape: '+' is a space.
function decode(s) {
  gsub(/\+/, " ", s)
  return decodepct(s)
}
function encode(s,    o, i, c, n, b) {
  o = ""; n = length(s)
  for (i = 1; i <= n; i++) {
    c = substr(s, i, 1)
    if (c ~ /^[A-Za-z0-9_.~-]$/) o = o c
    else if (c == " ") o = o "+"
    else { b = ord[c]; o = o "%" substr(hex, int(b / 16) + 1, 1) substr(hex, b % 16 + 1, 1) }
  }
  return o
}
# Go's URL.EscapedPath: the path as written when it is validly encoded, else escaped (keeping $&+,/:;=@).
function escpath(p,    o, i, c, n, b) {
  if (p ~ /^([A-Za-z0-9_.~!$&'()*+,;=:@\/-]|%[0-9A-Fa-f][0-9A-Fa-f])*$/) return p
  p = decodepct(p); o = ""; n = length(p)
  for (i = 1; i <= n; i++) {
    c = substr(p, i, 1)
    if (c ~ /^[A-Za-z0-9_.~$&+,\/:;=@-]$/) o = o c
    else { b = ord[c]; o = o "%" substr(hex, int(b / 16) + 1, 1) substr(hex, b % 16 + 1, 1) }
  }
  return o
}
function decodepct(s,    o, i, c, n) {
  o = ""; n = length(s)
  for (i = 1; i <= n; i++) {
    c = substr(s, i, 1)
    if (c == "%" && substr(s, i + 1, 2) ~ /^[0-9A-Fa-f][0-9A-Fa-f]$/) { o = o sprintf("%c", hexval(substr(s, i + 1, 2))); i += 2 }
    else o = o c
  }
  return o
}
function withpath(u,    s, p) {
  s = index(u, "://"); if (s == 0) return u
  p = index(substr(u, s + 3), "/"); if (p == 0) return u
  return substr(u, 1, s + 1 + p) escpath(substr(u, s + 2 + p))
}
function subst(v,    j, key, idx, from, rest) {
  for (j = 1; j <= nvars; j++) {
    key = names[j]; from = 1
    for (;;) {
      rest = substr(v, from)
      idx = index(tolower(rest), "${" key "}")
      if (idx == 0) break
      if (val[key] == "") { missing[key] = 1; break }
      v = substr(v, 1, from + idx - 2) val[key] substr(rest, idx + length(key) + 3)
      from = from + idx - 1 + length(val[key])
    }
  }
  return v
}
{
  url = $0
  h = index(url, "#"); if (h) url = substr(url, 1, h - 1)
  q = index(url, "?")
  if (q == 0) { print withpath(url); exit }
  base = withpath(substr(url, 1, q - 1))
  n = split(substr(url, q + 1), pairs, "&"); m = 0
  for (i = 1; i <= n; i++) {
    if (pairs[i] == "") continue
    e = index(pairs[i], "=")
    if (e) { k = decode(substr(pairs[i], 1, e - 1)); v = decode(substr(pairs[i], e + 1)) }
    else { k = decode(pairs[i]); v = "" }
    if (k == "uuid" && v == "") v = uuid
    m++; K[m] = k; V[m] = subst(v)
  }
  for (i = 2; i <= m; i++) {
    kk = K[i]; vv = V[i]; j = i - 1
    while (j >= 1 && K[j] > kk) { K[j + 1] = K[j]; V[j + 1] = V[j]; j-- }
    K[j + 1] = kk; V[j + 1] = vv
  }
  out = ""
  for (i = 1; i <= m; i++) out = out (i > 1 ? "&" : "") encode(K[i]) "=" encode(V[i])
  print base "?" out
  for (k in missing) print "missing " k
  exit
}
