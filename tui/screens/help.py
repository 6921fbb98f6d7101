"""`?`: what each pane shows and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# nettrace TUI

**Trace [1]**: every traced packet (newest last) with its verdict; below it the selected
packet's path, hop by hop: Δt since the first hop, where (sandbox or host : device), the
device's role, the kernel point, netfilter hook/table/chain/rule with its verdict, header
changes (NAT, TTL, MAC, encapsulation), and the drop with its reason. The reply follows.

**Topology [2]**: the lab as Docker's CNM (hosts → sandboxes → endpoints → networks) and a
drawn map; the selected path's hops are numbered on it in the order the packet took them.

| key | action |
|---|---|
| `i` | inject a packet (source, destination, protocol, port, count) |
| `l` | labs: open a running lab, bring an embedded one up (`u`) or down (`d`) |
| `w` | watch live lab traffic matching an expression; `w` again stops |
| `p` | probe status and events lost |
| `s` | save the shown packets as pcapng (one interface per lab device, a packet per hop) |
| `/` | filter packets: words must all match, `!word` must not (`c1 dropped !arp`) |
| `enter` / `d` | packet detail at the highlighted hop (scapy dissection and hex) |
| `[` `]` | previous / next hop in the packet detail |
| `1` `2` | Trace / Topology tab |
| `ctrl+p` | command palette |
| `q` / `ctrl+c` | quit: detaches every probe; labs brought up here are offered for teardown |
| `escape` | close this screen |

Without root or eBPF the topology still opens and the status line says what is missing.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body", classes="dialog"):
            yield Markdown(HELP)
