"""The views layer: every word and picture a person or a program gets from a path.

Processing (nettrace.trace.assemble) yields numbers and enums; the views name them:

* `names`    who owns a hop, which device, stable aliases (veth(c1), br(mynet)) for names
             Docker hashes from ids: goldens, `nettrace diff` and signatures use them.
* `paths`    rule text (`rule_text`, from the lab's rule index in the profile's syntax),
             verdict lines, hop details, the rich hop tables, `--json` lines, pcapng
             comments, the why/fix block.
* `mermaid`  a path drawn over its topology as a Mermaid flowchart (`--format mermaid`),
             pasteable into a GitHub issue.

No bcc, no kernel, no pyroute2: views run offline on bundles as they do live.
"""
