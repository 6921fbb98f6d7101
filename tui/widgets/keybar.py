"""The footer: active key bindings on one line, clickable.

Textual's Footer re-mounts one widget per key whenever focus moves; with ~10 keys that
was 20-45 ms of every tab switch or cursor move. This is one widget that redraws a line.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widget import Widget

KEY_STYLE = "bold #ffa62b"


class KeyBar(Widget):
    DEFAULT_CSS = "KeyBar { height: 1; dock: bottom; background: $panel; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._text = Text()
        self._keys: list[tuple[int, int, str]] = []        # x from, x to, key to press

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        text, keys, actions = Text(no_wrap=True, overflow="crop"), [], set()
        items = [binding for (_n, binding, enabled, _t) in screen.active_bindings.values()
                 if binding.show and enabled]
        palette = screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
        if self.app.ENABLE_COMMAND_PALETTE and palette is not None:
            items.append(palette.binding)
        for binding in items:
            if binding.action in actions:
                continue
            actions.add(binding.action)
            start = len(text)
            text.append(f" {self.app.get_key_display(binding)} ", KEY_STYLE)
            text.append(binding.description or binding.action)
            keys.append((start, len(text), binding.key.split(",")[0]))
            text.append(" ")
        if text.plain != self._text.plain:
            self._text, self._keys = text, keys
            self.refresh()

    def render(self) -> Text:
        return self._text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._keys:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return
