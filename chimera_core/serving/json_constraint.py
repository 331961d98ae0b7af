"""JSON mode: a character-level JSON prefix checker that constrains decoding, and a repairer.

The engine only accepts a token if the text so far plus the token is still a prefix of some
JSON object; generation ends as soon as the object closes. If the token budget runs out first,
``repair_json`` closes what is open, so the reply always parses.
"""

from __future__ import annotations

# Modes of the automaton.
_VALUE, _FIRST_KEY, _KEY, _COLON, _AFTER, _FIRST_ITEM, _STRING, _NUMBER, _LITERAL, _DONE = range(10)
# Number sub-states; the ``_N_OK`` ones may end the number.
_N_SIGN, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_EXP, _N_EXP_SIGN, _N_EXP_DIGITS = range(8)
_N_OK = frozenset({_N_ZERO, _N_INT, _N_FRAC, _N_EXP_DIGITS})
_WS = frozenset(" \t\n\r")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = frozenset('"\\/bfnrt')
_LITERALS = {"t": "rue", "f": "alse", "n": "ull"}
MAX_DEPTH = 32


class JsonPrefix:
    """State of a JSON text read so far; ``feed`` says whether it is still a valid prefix."""

    __slots__ = (
        "esc",
        "hexleft",
        "is_key",
        "lit",
        "max_ws",
        "mode",
        "num",
        "root_object",
        "stack",
        "ws",
    )

    def __init__(self, root_object: bool = True, max_ws: int = 12) -> None:
        self.mode = _VALUE
        self.stack: list[str] = []
        self.is_key = False
        self.esc = False
        self.hexleft = 0
        self.num = _N_SIGN
        self.lit = ""
        self.ws = 0
        self.root_object = root_object
        # A tiny model can loop on newlines forever; a cap on blank runs forces progress.
        self.max_ws = max_ws

    def copy(self) -> JsonPrefix:
        """An independent copy (for trying a candidate token)."""
        other = JsonPrefix.__new__(JsonPrefix)
        for name in JsonPrefix.__slots__:
            setattr(other, name, getattr(self, name))
        other.stack = list(self.stack)
        return other

    @property
    def complete(self) -> bool:
        """Whether a whole top-level value has been read."""
        return self.mode == _DONE

    def accepts(self, text: str) -> bool:
        """Whether ``text`` can follow without breaking the JSON (state unchanged)."""
        return self.copy().feed(text)

    def feed(self, text: str) -> bool:
        """Advance over ``text``; False as soon as it cannot be part of a JSON value."""
        return all(self._char(ch) for ch in text)

    def _value_done(self) -> None:
        self.mode = _AFTER if self.stack else _DONE

    def _open(self, ch: str) -> bool:
        if len(self.stack) >= MAX_DEPTH:
            return False
        self.stack.append("o" if ch == "{" else "a")
        self.mode = _FIRST_KEY if ch == "{" else _FIRST_ITEM
        return True

    def _start_value(self, ch: str) -> bool:
        if self.root_object and not self.stack and ch != "{":
            return False
        if ch in "{[":
            return self._open(ch)
        if ch == '"':
            self.mode, self.is_key, self.esc, self.hexleft = _STRING, False, False, 0
            return True
        if ch == "-" or ch in _DIGITS:
            self.mode = _NUMBER
            self.num = _N_SIGN if ch == "-" else (_N_ZERO if ch == "0" else _N_INT)
            return True
        if ch in _LITERALS:
            self.mode, self.lit = _LITERAL, _LITERALS[ch]
            return True
        return False

    def _close(self, ch: str) -> bool:
        if not self.stack or self.stack[-1] != ("o" if ch == "}" else "a"):
            return False
        self.stack.pop()
        self._value_done()
        return True

    def _char(self, ch: str) -> bool:
        mode = self.mode
        if mode == _STRING:
            return self._string_char(ch)
        if mode == _NUMBER:
            if self._number_char(ch):
                return True
            if self.num not in _N_OK:
                return False
            self._value_done()
            return self._char(ch)
        if mode == _LITERAL:
            if not self.lit or ch != self.lit[0]:
                return False
            self.lit = self.lit[1:]
            if not self.lit:
                self._value_done()
            return True
        if ch in _WS:
            self.ws += 1
            return self.ws <= self.max_ws
        self.ws = 0
        if mode == _DONE:
            return False
        if mode in (_VALUE, _FIRST_ITEM):
            if mode == _FIRST_ITEM and ch == "]":
                return self._close(ch)
            return self._start_value(ch)
        if mode in (_FIRST_KEY, _KEY):
            if ch == '"':
                self.mode, self.is_key, self.esc, self.hexleft = _STRING, True, False, 0
                return True
            return mode == _FIRST_KEY and ch == "}" and self._close(ch)
        if mode == _COLON:
            if ch != ":":
                return False
            self.mode = _VALUE
            return True
        # _AFTER: a comma or the closer of the open container.
        if ch == ",":
            self.mode = _KEY if self.stack[-1] == "o" else _VALUE
            return True
        return ch in "}]" and self._close(ch)

    def _string_char(self, ch: str) -> bool:
        if self.hexleft:
            if ch not in _HEX:
                return False
            self.hexleft -= 1
            return True
        if self.esc:
            self.esc = False
            if ch == "u":
                self.hexleft = 4
                return True
            return ch in _ESCAPES
        if ch == "\\":
            self.esc = True
            return True
        if ch == '"':
            if self.is_key:
                self.mode = _COLON
            else:
                self._value_done()
            return True
        return ch >= " "  # raw control characters are invalid inside JSON strings

    def _number_char(self, ch: str) -> bool:
        n = self.num
        digit = ch in _DIGITS
        if n == _N_SIGN:
            if digit:
                self.num = _N_ZERO if ch == "0" else _N_INT
            return digit
        if n in (_N_ZERO, _N_INT, _N_FRAC):
            if digit and n != _N_ZERO:
                return True
            if ch == "." and n != _N_FRAC:
                self.num = _N_DOT
                return True
            if ch in "eE":
                self.num = _N_EXP
                return True
            return False
        if n == _N_DOT:
            if digit:
                self.num = _N_FRAC
            return digit
        if n == _N_EXP and ch in "+-":
            self.num = _N_EXP_SIGN
            return True
        if n in (_N_EXP, _N_EXP_SIGN, _N_EXP_DIGITS):
            if digit:
                self.num = _N_EXP_DIGITS
            return digit
        return False

    def closing(self) -> str:
        """Text that completes the value from here (after a dangling comma was removed)."""
        out = ""
        mode = self.mode
        if mode == _STRING:
            out += "n" if self.esc else "0" * self.hexleft
            out += '"'
            if self.is_key:
                out += ":null"
        elif mode == _NUMBER and self.num not in _N_OK:
            out += "0"
        elif mode == _LITERAL:
            out += self.lit
        elif mode == _COLON:
            out += ":null"
        elif mode == _VALUE:
            out += "null" if self.stack else ("{}" if self.root_object else "null")
        return out + "".join("}" if c == "o" else "]" for c in reversed(self.stack))

    @property
    def dangling_comma(self) -> bool:
        """Whether the text ends in a comma that nothing follows yet."""
        return self.mode == _KEY or (self.mode == _VALUE and bool(self.stack) and self._after_comma)

    @property
    def _after_comma(self) -> bool:
        # In an array, _VALUE only follows a comma (the first item is _FIRST_ITEM).
        return self.stack[-1] == "a"


def repair_json(text: str, root_object: bool = True) -> str | None:
    """Complete a JSON prefix into a parseable document; None when ``text`` is no JSON prefix."""
    state = JsonPrefix(root_object=root_object, max_ws=len(text) + 1)
    if not state.feed(text):
        return None
    if state.complete:
        return text
    if state.dangling_comma:
        text = text.rstrip()[:-1]
        state = JsonPrefix(root_object=root_object, max_ws=len(text) + 1)
        state.feed(text)
    return text + state.closing()
