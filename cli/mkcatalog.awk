# mkcatalog.awk — systemd/dchatd.catalog as C (cli/catalog.c, made by the Makefile):
# dchatctl explain reads the explanations without journald.  Every entry is
# "# event-name", "-- MESSAGE_ID", headers (Subject: ...), an empty line, the text.
function esc(s) {
        gsub(/\\/, "&&", s)           # & is what matched: a backslash doubled, in mawk and gawk alike
        gsub(/"/, "\\\\&", s)
        return s
}
function cstr(s) {
        return "\"" esc(s) "\""
}
function flush() {
        if (id != "")
                printf "        { %s, %s, %s,\n          %s },\n", cstr(name), cstr(id), cstr(subject), text
        id = ""; subject = ""; text = "\"\""; inbody = 0
}
BEGIN {
        print "/* Generated from systemd/dchatd.catalog by cli/mkcatalog.awk: do not edit. */"
        print "#include \"explain.h\""
        print "const struct catalog_entry catalog[] = {"
        text = "\"\""
}
/^# [a-z][a-z-]*$/ { flush(); name = substr($0, 3); next }
/^-- [0-9a-f]+$/ { id = substr($0, 4); next }
id != "" && !inbody && /^Subject: / { subject = substr($0, 10); next }
id != "" && !inbody && /^$/ { inbody = 1; next }
id != "" && inbody { text = text "\n          \"" esc($0) "\\n\""; next }
END {
        flush()
        print "};"
        print "const unsigned catalog_n = sizeof catalog / sizeof catalog[0];"
}
