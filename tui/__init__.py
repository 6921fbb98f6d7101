"""nettrace's Textual TUI: the lab's topology, an inject form, and each packet's path hop by hop.

It calls only the library API the CLI uses (topology model and builder, Tracer, Path);
`tui.app.make_app(...)` builds the app for `nettrace tui`, tests and the benchmark.
"""
