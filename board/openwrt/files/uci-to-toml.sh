#!/bin/sh
# Translates xmppd's UCI config into the server's TOML config, on stdout. Reads the
# `uci export xmppd` format, which is also the file format of /etc/config/xmppd:
#
#   uci export xmppd | uci-to-toml > /var/etc/xmppd.toml
#   uci-to-toml < /etc/config/xmppd
#
# Mapping: the section of type `xmppd` gives the top-level keys, every other section the
# table named after its type (`config limits` -> [limits]); `option` becomes a key, `list`
# an array of strings. Values: '' is left out (the server's default applies), '0'/'1' of a
# boolean key become false/true, digits become integers, anything else a string. Options
# only the init script uses (enabled, dns) are dropped. Unknown options are passed on, so
# that `xmppd check-config` names them with a "did you mean" instead of them being ignored.
# POSIX sh and awk only: runs with BusyBox on the router.
exec awk '
function unquote(s,    out, i, c, q) {
    # UCI quoting: single quotes (nothing is escaped inside them), double quotes
    # (backslash escapes), or a bare word (backslash escapes); adjacent parts concatenate,
    # which is how `uci export` writes a single quote inside a single-quoted value.
    out = ""; q = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q == "") {
            if (c == "\047" || c == "\"") { q = c; continue }
            if (c == " " || c == "\t") break
            if (c == "\\" && i < length(s)) { i++; c = substr(s, i, 1) }
            out = out c
        } else if (c == q) {
            q = ""
        } else {
            if (q == "\"" && c == "\\" && i < length(s)) { i++; c = substr(s, i, 1) }
            out = out c
        }
    }
    return out
}
function toml_string(v) {
    gsub(/\\/, "\\\\", v)
    gsub(/"/, "\\\"", v)
    gsub(/\t/, "\\t", v)
    return "\"" v "\""
}
function toml_value(key, v) {
    if (key in BOOL) {
        if (v == "1" || v == "true" || v == "yes" || v == "on") return "true"
        if (v == "0" || v == "false" || v == "no" || v == "off") return "false"
        return toml_string(v)
    }
    if (!(key in STRING) && v ~ /^-?[0-9]+$/) return v
    return toml_string(v)
}
function flush_section(    i, k, line, out, j) {
    if (section == "") return
    out = ""
    for (i = 1; i <= nkeys; i++) {
        k = keys[i]
        if (kind[k] == "list") {
            line = k " = ["
            for (j = 1; j <= count[k]; j++)
                line = line (j > 1 ? ", " : "") toml_string(items[k, j])
            line = line "]"
        } else {
            line = k " = " toml_value(k, items[k, 1])
        }
        out = out line "\n"
        delete kind[k]; delete count[k]
    }
    if (section == "xmppd") top = top out
    else if (out != "") tables = tables "\n[" section "]\n" out
    nkeys = 0; section = ""
}
function add(k, v, how) {
    if (section == "xmppd" && (k in INIT_ONLY)) return
    if (how == "option" && v == "") return
    if (!(k in kind)) { keys[++nkeys] = k; kind[k] = how; count[k] = 0 }
    if (how == "option") count[k] = 0
    items[k, ++count[k]] = v
}
BEGIN {
    BOOL["require_encryption"]; BOOL["allow_plain_unencrypted"]
    STRING["domain"]; STRING["data_dir"]; STRING["log_level"]
    STRING["certificate"]; STRING["key"]
    INIT_ONLY["enabled"]; INIT_ONLY["dns"]
    section = ""; nkeys = 0; top = ""; tables = ""
}
{
    sub(/^[ \t]+/, "")
    if ($0 == "" || substr($0, 1, 1) == "#") next
    word = $1
    rest = $0
    sub(/^[^ \t]+[ \t]*/, "", rest)
    if (word == "package") next
    if (word == "config") {
        flush_section()
        section = unquote(rest)
        next
    }
    if (word == "option" || word == "list") {
        if (section == "") next
        key = rest
        sub(/[ \t].*$/, "", key)
        key = unquote(key)
        value = rest
        sub(/^[^ \t]+[ \t]*/, "", value)
        add(key, unquote(value), word)
    }
}
END {
    flush_section()
    printf "# Generated from the UCI config (/etc/config/xmppd) by uci-to-toml when xmppd\n"
    printf "# starts: edit that file, not this one.\n"
    printf "%s%s", top, tables
}
'
