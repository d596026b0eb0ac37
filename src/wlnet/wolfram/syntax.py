"""Wolfram Language input form → expression tree: a regex lexer and a Pratt parser.

The tree is made of Python values: int and float (numbers), str (strings), `Sym` (symbols),
`Expr(head, args)` (everything else, heads named as Wolfram names them: List, Rule, Plus, ...),
`Slot(n)` (#n in a pure function) and `Lit(value)` (a list of plain numbers read in one pass).

Operator precedences are Wolfram's (higher binds tighter):

    ;  10   =  40   //  70   &  90   -> :>  120 (right)   ==  290   ;;  305   + -  310   * /  400
    unary -  480   ^  590 (right)   @@  620 (right)   @  640 (right)   f[...] x[[...]]  highest

At the top level a newline ends a statement once the expression is complete, as in a notebook
cell or a .wl file; inside brackets newlines are spaces.
"""

from __future__ import annotations

import json
import re

from ..core.errors import NetError


class WolframSyntaxError(NetError, SyntaxError):
    """Wolfram code that cannot be read: the message names the line and column and shows the
    text around them.

    >>> from wlnet import from_wolfram
    >>> try:
    ...     from_wolfram("NetChain[{LinearLayer[2]}")
    ... except WolframSyntaxError as e:
    ...     print(str(e).splitlines()[0])
    Wolfram syntax error at line 1, column 26: expected "]" to close the "[" at column 9, but the code ends
    """


class Sym:
    """A symbol, e.g. Automatic or LongShortTermMemoryLayer."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __eq__(self, other) -> bool:
        return isinstance(other, Sym) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Sym", self.name))

    def __repr__(self) -> str:
        return self.name


class Expr:
    """head[args...]; `pos` is the offset in the source of the head's first character."""

    __slots__ = ("head", "args", "pos")

    def __init__(self, head, args: tuple, pos: int = -1):
        self.head = head
        self.args = tuple(args)
        self.pos = pos

    def __eq__(self, other) -> bool:
        return isinstance(other, Expr) and self.head == other.head and self.args == other.args

    def __hash__(self) -> int:
        return hash((self.head, self.args))

    def __repr__(self) -> str:
        return f"{self.head!r}[{', '.join(map(repr, self.args))}]"

    def is_(self, name: str) -> bool:
        return isinstance(self.head, Sym) and self.head.name == name


class Slot:
    """#n (n ≥ 1) in a pure function."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n

    def __eq__(self, other) -> bool:
        return isinstance(other, Slot) and other.n == self.n

    def __hash__(self) -> int:
        return hash(("Slot", self.n))

    def __repr__(self) -> str:
        return f"#{self.n}"


class Lit:
    """A nested list of plain numbers, already read (a Python list)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def node(name: str, *args, pos: int = -1) -> Expr:
    return Expr(Sym(name), args, pos)


# ---- the lexer ----------------------------------------------------------------------------------
_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:`[\d.]*`?[\d.]*)?(?:\*\^[+-]?\d+)?"
_SYMBOL = r"[A-Za-z$][A-Za-z0-9$]*(?:`[A-Za-z$][A-Za-z0-9$]*)*"
# longest operators first; those Wolfram has but this reader refuses are named in REFUSED
_OPERATORS = [
    "//.", "//@", "@@@", "===", "=!=", "->", ":>", "//", "@@", "/@", "/.", "/;", ";;", ":=", "^=", "^:=",
    "==", "!=", "<=", ">=", "<|", "|>", "&&", "||", "[[", "++", "--", "+=", "-=", "*=", "/=", "<>", "~~", "**",
    "^^", "@", ";", "=", "&", "+", "-", "*", "/", "^", "(", ")", "[", "]", "{", "}", ",", "<", ">", "!", "?",
    "%", "'", ".", "|", "~", ":", "_",
]
_TOKEN = re.compile(
    rf"(?P<num>{_NUMBER})|(?P<sym>{_SYMBOL})|(?P<str>\")|(?P<slot>#(?:\d+|#|[A-Za-z][A-Za-z0-9]*)?)|(?P<op>"
    + "|".join(re.escape(o) for o in _OPERATORS) + ")"
)
_SPACE = re.compile(r"[ \t\r\f\n]*")
_COMMENT = re.compile(r"\(\*|\*\)")
_STRING_BODY = re.compile(r'(?:[^"\\]|\\.)*"', re.S)
_ESCAPE = re.compile(
    r"\\(?:\[([A-Za-z]+)\]|:([0-9a-fA-F]{4})|\.([0-9a-fA-F]{2})|\|([0-9a-fA-F]{6})|([0-7]{3})|(\n)|(.))", re.S)
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "!": "",
                   "<": "", ">": "", "`": "`"}
_NAMED = {"Alpha": "α", "Beta": "β", "Gamma": "γ", "Delta": "δ", "Epsilon": "ε", "Lambda": "λ", "Mu": "μ",
          "Pi": "π", "Sigma": "σ", "Theta": "θ", "Omega": "ω", "RightArrow": "→", "LeftArrow": "←",
          "Rule": "→", "Times": "×", "Degree": "°", "Bullet": "•", "Ellipsis": "…", "NonBreakingSpace": "\u00a0",
          "LongDash": "—", "Dash": "–", "Euro": "€", "Space": " ", "NewLine": "\n", "Tab": "\t"}
REFUSED = {
    "//.": "ReplaceRepeated", "//@": "MapAll", "@@@": "MapApply", "===": "SameQ", "=!=": "UnsameQ",
    "/@": "Map", "/.": "ReplaceAll", "/;": "Condition", ":=": "SetDelayed", "^=": "UpSet", "^:=": "UpSetDelayed",
    "!=": "Unequal", "<=": "LessEqual", ">=": "GreaterEqual", "&&": "And", "||": "Or",
    "++": "Increment", "--": "Decrement", "+=": "AddTo", "-=": "SubtractFrom", "*=": "TimesBy", "/=": "DivideBy",
    "<>": "StringJoin", "~~": "StringExpression", "**": "NonCommutativeMultiply", "^^": "a number in a base",
    "<": "Less", ">": "Greater", "!": "Not (or Factorial)", "?": "PatternTest (or Information)", "%": "Out",
    "'": "Derivative", ".": "Dot", "|": "Alternatives", "~": "infix notation", ":": "Pattern", "_": "Blank",
}
_CLOSERS = {")", "]", "}", "|>", ",", "]]"}


class Token:
    __slots__ = ("kind", "text", "start", "end", "nl")

    def __init__(self, kind, text, start, end, nl):
        self.kind, self.text, self.start, self.end, self.nl = kind, text, start, end, nl

    def __repr__(self) -> str:
        return f"{self.kind}:{self.text!r}"


def where(src: str, pos: int) -> tuple[int, int, str]:
    """(line, column, the line with a caret under the column), 1-based."""
    pos = max(0, min(pos, len(src)))
    line = src.count("\n", 0, pos) + 1
    start = src.rfind("\n", 0, pos) + 1
    end = src.find("\n", pos)
    end = len(src) if end < 0 else end
    col = pos - start + 1
    text, caret = src[start:end], col - 1
    if len(text) > 100:  # a window around the column
        lo = max(0, caret - 50)
        text, caret = ("…" if lo else "") + text[lo:lo + 100] + ("…" if lo + 100 < len(text) else ""), caret - lo + (
            1 if lo else 0)
    return line, col, f"  {text}\n  {' ' * caret}^"


def syntax_error(src: str, pos: int, message: str) -> WolframSyntaxError:
    line, col, shown = where(src, pos)
    return WolframSyntaxError(f"Wolfram syntax error at line {line}, column {col}: {message}\n{shown}")


class Lexer:
    """Tokens on demand; `pos` may be moved forward by the parser (a list read in one pass)."""

    def __init__(self, src: str):
        self.src = src
        self.pos = 0
        self._peeked: Token | None = None

    def _skip(self) -> bool:
        """Skip spaces and comments (nested); True if a newline was among them."""
        src, nl = self.src, False
        while True:
            m = _SPACE.match(src, self.pos)
            if "\n" in m.group():
                nl = True
            self.pos = m.end()
            if not src.startswith("(*", self.pos):
                return nl
            depth, start = 0, self.pos
            for c in _COMMENT.finditer(src, self.pos):
                depth += 1 if c.group() == "(*" else -1
                if depth == 0:
                    if "\n" in src[start:c.end()]:
                        nl = True
                    self.pos = c.end()
                    break
            else:
                raise syntax_error(src, start, "the comment that starts here is not closed with *)")

    def peek(self) -> Token:
        if self._peeked is None:
            self._peeked = self._next()
        return self._peeked

    def next(self) -> Token:
        tok = self.peek()
        self._peeked = None
        return tok

    def reset(self, pos: int) -> None:
        self.pos = pos
        self._peeked = None

    def _next(self) -> Token:
        nl = self._skip()
        src, pos = self.src, self.pos
        if pos >= len(src):
            return Token("end", "", pos, pos, nl)
        m = _TOKEN.match(src, pos)
        if m is None:
            raise syntax_error(src, pos, f"the character {src[pos]!r} cannot start anything here")
        kind = m.lastgroup
        if kind == "str":
            body = _STRING_BODY.match(src, m.end())
            if body is None:
                raise syntax_error(src, pos, "the string that starts here is not closed with \"")
            self.pos = body.end()
            return Token("str", self._unescape(body.group()[:-1], m.end()), pos, self.pos, nl)
        self.pos = m.end()
        return Token(kind, m.group(), pos, self.pos, nl)

    def _unescape(self, body: str, start: int) -> str:
        if "\\" not in body:
            return body

        def one(m):
            name, h4, h2, h6, octal, newline, ch = m.groups()
            if name is not None:
                if name not in _NAMED:
                    raise syntax_error(self.src, start + m.start(), f"the named character \\[{name}] is not known here")
                return _NAMED[name]
            if h4 or h2 or h6:
                return chr(int(h4 or h2 or h6, 16))
            if octal:
                return chr(int(octal, 8))
            if newline:
                return ""
            if ch not in _SIMPLE_ESCAPES:
                raise syntax_error(self.src, start + m.start(), f"\\{ch} is not an escape in a Wolfram string")
            return _SIMPLE_ESCAPES[ch]

        return _ESCAPE.sub(one, body)


# ---- numbers ----------------------------------------------------------------------------------------
def number(text: str):
    """A Wolfram number: 12 → int, 1.5, 1.5*^-3, 2*^3 (an integer), 1.5`20 (precision ignored)."""
    mant, _, exp = text.partition("*^")
    mant = mant.split("`", 1)[0]
    if "." in mant or (exp and not 0 <= int(exp) <= 400):  # 1*^100000000 a real (infinite), not a huge integer
        return float(mant + ("e" + exp if exp else ""))
    return int(mant) * 10 ** int(exp) if exp else int(mant)


# a run of characters that plain numeric lists are made of; a list read in one pass lies inside one
_NUMERIC_RUN = re.compile(r"[0-9.,{}\s*^+-]+")
_BRACES = re.compile(r"[{}]")
_TRAILING_DOT = re.compile(r"\.(?!\d)")
FAST_MIN = 64  # shorter lists go through the parser: their integers stay integers exactly as written


# ---- the parser -------------------------------------------------------------------------------------
_INFIX = {  # operator → (left binding power, head)
    ";": (10, "CompoundExpression"), "=": (40, "Set"), "//": (70, None), "&": (90, "Function"),
    "->": (120, "Rule"), ":>": (120, "RuleDelayed"), ";;": (305, "Span"), "+": (310, "Plus"),
    "-": (310, "Subtract"), "*": (400, "Times"), "/": (400, "Divide"), "^": (590, "Power"),
    "==": (290, "Equal"), "@@": (620, "Apply"), "@": (640, None), "[": (1000, None), "[[": (1000, "Part"),
}
_RIGHT = {"=", "->", ":>", "^", "@@", "@"}
_OPEN = {"(": ")", "[": "]", "{": "}", "<|": "|>", "[[": "]]"}


class Parser:
    def __init__(self, src: str):
        self.src = src
        self.lex = Lexer(src)
        self.depth = 0  # brackets open: a newline ends a statement only at depth 0
        self._run = (0, 0)  # the last numeric run found: (start, end)
        self._failed_run = (-1, -1)

    def error(self, tok: Token, message: str) -> WolframSyntaxError:
        return syntax_error(self.src, tok.start, message)

    def statements(self) -> list:
        out = []
        while self.lex.peek().kind != "end":
            out.append(self.expression(0))
            tok = self.lex.peek()
            if tok.kind != "end" and not tok.nl:
                raise self._unexpected(tok)
        return out

    def _unexpected(self, tok: Token) -> WolframSyntaxError:
        if tok.kind == "op" and tok.text in REFUSED:
            return self.error(tok, f"{tok.text!r} ({REFUSED[tok.text]}) is not supported")
        if tok.kind == "op" and tok.text in _CLOSERS:
            return self.error(tok, f"{tok.text!r} closes nothing that is open")
        if tok.kind in ("num", "sym", "str", "slot") or tok.text in ("(", "{", "<|"):
            return self.error(tok, f"{tok.text or 'a string'!r} follows an expression without an operator between "
                                   "them; implicit multiplication (a space between two expressions) is not "
                                   "supported: write * or put the statements on separate lines")
        return self.error(tok, f"unexpected {tok.text!r}")

    def expression(self, rbp: int):
        tok = self.lex.next()
        start = tok.start
        left = self.prefix(tok)
        while True:
            tok = self.lex.peek()
            if tok.kind != "op" or tok.text not in _INFIX or (tok.nl and self.depth == 0):
                return left
            lbp, head = _INFIX[tok.text]
            if lbp <= rbp:
                return left
            self.lex.next()
            left = self.infix(tok, left, lbp, head, start)

    def _starts_expression(self, tok: Token) -> bool:
        if tok.kind in ("num", "sym", "str", "slot"):
            return True
        return tok.kind == "op" and tok.text in ("(", "{", "<|", "-", "+", ";;")

    def infix(self, tok: Token, left, lbp: int, head, start: int):
        op = tok.text
        if op == "[":
            return Expr(left, self.sequence("[", "]", tok), start)
        if op == "[[":
            args = self.sequence("[[", "]]", tok)
            return Expr(Sym("Part"), (left, *args), tok.start)
        if op == "&":
            return node("Function", left, pos=tok.start)
        if op == "//":
            f = self.expression(lbp)
            return Expr(f, (left,), tok.start)
        if op == "@":
            return Expr(left, (self.expression(lbp - 1),), tok.start)
        if op == ";":
            items = [left]
            while True:
                nxt = self.lex.peek()
                if nxt.kind == "end" or (nxt.kind == "op" and nxt.text in _CLOSERS):
                    items.append(Sym("Null"))
                    break
                items.append(self.expression(lbp))
                nxt = self.lex.peek()
                if not (nxt.kind == "op" and nxt.text == ";" and not (nxt.nl and self.depth == 0)):
                    break
                self.lex.next()
            return node("CompoundExpression", *items, pos=tok.start)
        if op == ";;":
            stop = self.expression(lbp) if self._starts_expression(self.lex.peek()) else Sym("All")
            return self._span(left, stop, tok, lbp)
        right = self.expression(lbp - 1 if op in _RIGHT else lbp)
        if op == "=" and not isinstance(left, Sym):
            raise self.error(tok, f"only a symbol can be assigned with =, but the left side is {left!r}")
        return node(head, left, right, pos=tok.start)

    def _span(self, start, stop, tok, lbp):
        nxt = self.lex.peek()
        if nxt.kind == "op" and nxt.text == ";;" and not (nxt.nl and self.depth == 0):
            self.lex.next()
            step = self.expression(lbp)
            return node("Span", start, stop, step, pos=tok.start)
        return node("Span", start, stop, pos=tok.start)

    def sequence(self, open_: str, close: str, tok: Token) -> tuple:
        """Comma-separated expressions up to `close` (an empty slot between commas is Null)."""
        self.depth += 1
        closing = "]" if close == "]]" else close
        items = []
        nxt = self.lex.peek()
        if nxt.kind == "op" and nxt.text == closing:
            self.lex.next()
        else:
            while True:
                nxt = self.lex.peek()
                if nxt.kind == "op" and nxt.text in (",", closing):
                    items.append(Sym("Null"))
                elif nxt.kind == "end":
                    raise self._unclosed(open_, tok, nxt)
                else:
                    items.append(self.expression(0))
                nxt = self.lex.next()
                if nxt.kind == "op" and nxt.text == ",":
                    continue
                if nxt.kind == "op" and nxt.text == closing:
                    break
                if nxt.kind == "end":
                    raise self._unclosed(open_, tok, nxt)
                raise self._expected(closing, open_, tok, nxt)
        if close == "]]":
            end = self.lex.next()
            if not (end.kind == "op" and end.text == "]"):
                raise self.error(end, f'expected "]]" to close the "[[" at column {where(self.src, tok.start)[1]}')
        self.depth -= 1
        return tuple(items)

    def _unclosed(self, open_, tok, at):
        _, col, _ = where(self.src, tok.start)
        line = where(self.src, tok.start)[0]
        here = f"column {col}" if line == where(self.src, at.start)[0] else f"line {line}, column {col}"
        return self.error(at, f'expected "{_OPEN[open_]}" to close the "{open_}" at {here}, but the code ends')

    def _expected(self, closing, open_, tok, nxt):
        if nxt.kind == "op" and nxt.text in REFUSED:
            return self._unexpected(nxt)
        _, col, _ = where(self.src, tok.start)
        if nxt.kind == "op" and nxt.text in _CLOSERS:
            return self.error(nxt, f'expected "," or "{closing}" (for the "{open_}" at column {col}), but found '
                                   f'"{nxt.text}"')
        return self._unexpected(nxt)

    def prefix(self, tok: Token):
        kind, text = tok.kind, tok.text
        if kind == "num":
            return number(text)
        if kind == "str":
            return text
        if kind == "sym":
            return Sym(text[text.rfind("`") + 1:] if text.startswith(("System`", "Global`")) else text)
        if kind == "slot":
            if text in ("#", "#1"):
                return Slot(1)
            if text[1:].isdigit() and int(text[1:]) >= 1:
                return Slot(int(text[1:]))
            raise self.error(tok, f"{text} is not supported in a pure function; use #, #1, #2, ...")
        if kind == "end":
            raise self.error(tok, "the code ends where an expression is expected")
        if text == "(":
            self.depth += 1
            inner = self.expression(0)
            end = self.lex.next()
            self.depth -= 1
            if not (end.kind == "op" and end.text == ")"):
                if end.kind == "end":
                    raise self._unclosed("(", tok, end)
                raise self._expected(")", "(", tok, end) if end.text in _CLOSERS else self._unexpected(end)
            return inner
        if text == "{":
            fast = self._numeric_list(tok.start)
            if fast is not None:
                return fast
            return node("List", *self.sequence("{", "}", tok), pos=tok.start)
        if text == "<|":
            return node("Association", *self.sequence("<|", "|>", tok), pos=tok.start)
        if text == "-":
            operand = self.expression(480)
            if isinstance(operand, int | float) and not isinstance(operand, bool):
                return -operand
            return node("Minus", operand, pos=tok.start)
        if text == "+":
            return self.expression(480)
        if text == ";;":
            stop = self.expression(305) if self._starts_expression(self.lex.peek()) else Sym("All")
            return self._span(1, stop, tok, 305)
        if text in REFUSED:
            raise self._unexpected(tok)
        if text in _CLOSERS:
            raise self.error(tok, f"expected an expression, but found {text!r}")
        raise self.error(tok, f"{text!r} cannot start an expression")

    def _numeric_list(self, start: int):
        """A long list of plain numbers ({...}, nested) read in one pass with json, or None."""
        src = self.src
        if self._failed_run[0] <= start < self._failed_run[1]:
            return None
        if not (self._run[0] <= start < self._run[1]):
            m = _NUMERIC_RUN.match(src, start)
            self._run = (start, m.end())
        run_end = self._run[1]
        if run_end - start < FAST_MIN:
            return None
        depth = 0
        for b in _BRACES.finditer(src, start, run_end):
            depth += 1 if b.group() == "{" else -1
            if depth == 0:
                end = b.end()
                break
        else:
            self._failed_run = self._run
            return None
        text = src[start:end].replace("{", "[").replace("}", "]").replace("*^", "e")
        if "." in text:
            text = _TRAILING_DOT.sub(".0", text)
        try:
            value = json.loads(text)
        except ValueError:
            self._failed_run = (start, end)
            return None
        self.lex.reset(end)
        return Lit(value)


def parse(src: str) -> list:
    """The statements of `src` as expression trees (a CompoundExpression for a; b)."""
    if not isinstance(src, str):
        raise WolframSyntaxError(f"from_wolfram: expected Wolfram code as a string, but was given "
                                 f"{type(src).__name__}.")
    return Parser(src).statements()
