#!/usr/bin/env bash
# 22-reuse — Roucairol–Carvalho (reuse_permissions, the default): a peer keeps the
# permissions it was granted until someone asks for them.  Posting again with nobody
# else asking costs no message; after another peer's entry only that peer is asked;
# with reuse_permissions = false (reloaded) every entry asks everyone.  As the events
# and the status counters show it.
. "$(dirname "$0")/../lib/lib.sh"
need_root

cluster_start 3

# requests node1 sent, and its cs-enter lines, so far
sent() { count_events node1 request-sent; }
last_enter() { events node1 cs-enter | tail -n 1 | ev_field msg; }
counter() { ctl "$1" status --json | perl -MJSON::PP -e 'print decode_json(join "", <STDIN>)->{counters}{$ARGV[0]}' "$2"; }

ok "node1: first post" ctl node1 post "first"
is "$(sent)" 2 "the first entry asks both other peers"
like "$(last_enter)" '^entered the critical section under request [0-9]+ \(fence [0-9]+\)$' "cs-enter: nothing reused (the fence named)"

for i in 2 3; do
    ok "node1: post $i" ctl node1 post "again $i"
done
is "$(sent)" 2 "two more entries, nobody else asked: no REQUEST sent"
is "$(events node1 cs-enter | wc -l)" 3 "three entries"
like "$(last_enter)" '2 permission\(s\) reused, 0 asked for$' "cs-enter says both permissions were reused"
is "$(counter node1 cs_reused)" 2 "status counts 2 entries without a message"
is "$(counter node1 cs_entries)" 3 "... of 3"
is "$(count_events node2 request-received)" 1 "node2 received one request only"

# node2 takes its turn: it asks both; node1 gives node2's permission back
ok "node2 posts" ctl node2 post "node2's turn"
is "$(count_events node2 request-sent)" 2 "node2 asks node1 and node3"
ok "node1 posts after node2" ctl node1 post "after node2"
is "$(sent)" 3 "node1 asks again only node2, whose permission it gave away"
is "$(events node1 request-sent | tail -n 1 | ev_field peer)" node2 "... that request went to node2"
like "$(last_enter)" '1 permission\(s\) reused, 1 asked for$' "cs-enter: node3's permission reused, node2's asked for"

# fences still strictly increase, in the order of entry
ctl node3 view --json > "$T/view.json"
like "$(check_fences "$T/view.json")" '^ok 5 entries$' "the 5 entries' fences strictly increase"
is "$(perl -MJSON::PP -ne 'print decode_json($_)->{text}, "|"' "$T/view.json")" \
    "first|again 2|again 3|node2's turn|after node2|" "in the order posted"

# plain Ricart–Agrawala after a reload
CONF_EXTRA=('reuse_permissions = false;')
write_config
node_hup node1
ok "node1 reloaded" wait_event node1 reloaded 1 5
before=$(sent)
ok "node1 posts twice" sh -c "'$DCHATCTL' -s '$(node_sock node1)' post plain1 && '$DCHATCTL' -s '$(node_sock node1)' post plain2"
is "$(( $(sent) - before ))" 4 "reuse_permissions = false: each entry asks both peers again"
like "$(last_enter)" '^entered the critical section under request [0-9]+ \(fence [0-9]+\)$' "cs-enter: nothing reused (the fence named)"
is "$(counter node1 cs_reused)" 2 "no new entry without a message"

for n in master node1 node2 node3; do
    is "$(count_events $n 'protocol-error|append-refused|post-failed')" 0 "$n logged no protocol-error, append-refused or post-failed"
done
done_testing
