//! A small PEG engine with the semantics of llama.cpp's chat-output parser, so that the model's
//! text is split into reasoning, content and tool calls exactly where llama-server splits it.
//!
//! What makes it llama.cpp's and not any PEG: parsing is always *lenient* — input that ends in the
//! middle of something is not a failure but "need more input", which a sequence stops at and
//! passes up with the tagged nodes it has so far (a truncated answer still yields its partial
//! tool call, and streaming re-parses the growing text the same way). `until` stops before a
//! delimiter, or before a prefix of one that runs to the end of the input; an `atomic` part
//! that is cut short contributes no nodes.

/// Index of a parser in its [`Arena`].
pub type Id = usize;

#[derive(Debug, Clone)]
enum Node {
    Eps,
    End,
    Lit(String),
    Seq(Vec<Id>),
    Choice(Vec<Id>),
    /// `min`, `max` (None: unbounded).
    Repeat(Id, usize, Option<usize>),
    Peek(Id),
    Not(Id),
    /// Everything up to one of the delimiters (none: to the end).
    Until(Vec<String>),
    Space,
    /// Characters in one of the inclusive ranges, `min` to `max` of them.
    Chars(Vec<(char, char)>, usize, Option<usize>),
    /// The inside of a JSON string up to the closing `"`, escapes checked.
    StrContent,
    Tag(&'static str, Id),
    Atomic(Id),
    /// Filled in later (recursive rules such as JSON values).
    Forward(Option<Id>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Fail,
    NeedMore,
}

/// A tagged span of the input, with the tagged spans inside it.
#[derive(Debug, Clone)]
pub struct AstNode {
    pub tag: &'static str,
    pub start: usize,
    pub end: usize,
    pub children: Vec<usize>,
}

#[derive(Debug)]
struct Outcome {
    status: Status,
    end: usize,
    nodes: Vec<usize>,
}

impl Outcome {
    fn new(status: Status, end: usize) -> Outcome {
        Outcome { status, end, nodes: Vec::new() }
    }
}

/// The parsers of one grammar; `root` is what [`Arena::parse`] runs.
#[derive(Debug, Clone, Default)]
pub struct Arena {
    nodes: Vec<Node>,
    root: Id,
    json: Option<Id>,
}

/// The result of a parse: how it ended, and the tagged spans in visiting order (pre-order).
pub struct Parsed {
    pub status: Status,
    pub end: usize,
    pub ast: Vec<AstNode>,
    pub top: Vec<usize>,
}

impl Parsed {
    /// Calls `f` on every tagged node, parents before children, in input order.
    pub fn visit(&self, f: &mut impl FnMut(&AstNode)) {
        fn walk(ast: &[AstNode], id: usize, f: &mut impl FnMut(&AstNode)) {
            f(&ast[id]);
            for &c in &ast[id].children {
                walk(ast, c, f);
            }
        }
        for &id in &self.top {
            walk(&self.ast, id, f);
        }
    }
}

impl Arena {
    fn add(&mut self, n: Node) -> Id {
        self.nodes.push(n);
        self.nodes.len() - 1
    }
    pub fn eps(&mut self) -> Id {
        self.add(Node::Eps)
    }
    pub fn end(&mut self) -> Id {
        self.add(Node::End)
    }
    pub fn lit(&mut self, s: &str) -> Id {
        self.add(Node::Lit(s.to_string()))
    }
    pub fn seq(&mut self, parts: &[Id]) -> Id {
        self.add(Node::Seq(parts.to_vec()))
    }
    pub fn choice(&mut self, parts: &[Id]) -> Id {
        self.add(Node::Choice(parts.to_vec()))
    }
    pub fn repeat(&mut self, p: Id, min: usize, max: Option<usize>) -> Id {
        self.add(Node::Repeat(p, min, max))
    }
    pub fn optional(&mut self, p: Id) -> Id {
        self.repeat(p, 0, Some(1))
    }
    pub fn peek(&mut self, p: Id) -> Id {
        self.add(Node::Peek(p))
    }
    pub fn until(&mut self, delims: &[&str]) -> Id {
        self.add(Node::Until(delims.iter().map(|d| d.to_string()).collect()))
    }
    pub fn rest(&mut self) -> Id {
        self.add(Node::Until(Vec::new()))
    }
    pub fn space(&mut self) -> Id {
        self.add(Node::Space)
    }
    pub fn tag(&mut self, tag: &'static str, p: Id) -> Id {
        self.add(Node::Tag(tag, p))
    }
    pub fn atomic(&mut self, p: Id) -> Id {
        self.add(Node::Atomic(p))
    }
    pub fn set_root(&mut self, p: Id) {
        self.root = p;
    }

    /// `a`, optional whitespace, `b` (llama.cpp's `<<`).
    pub fn spaced(&mut self, a: Id, b: Id) -> Id {
        let s = self.space();
        self.seq(&[a, s, b])
    }

    /// A JSON value, written as llama.cpp's grammar writes it (so that a number at the end of
    /// the input waits for more, and a string needs its closing quote).
    pub fn json(&mut self) -> Id {
        if let Some(j) = self.json {
            return j;
        }
        let value = self.add(Node::Forward(None));
        self.json = Some(value);
        let ws = self.space();
        let (quote, colon, comma) = (self.lit("\""), self.lit(":"), self.lit(","));
        let content = self.add(Node::StrContent);
        let string = self.seq(&[quote, content, quote]);
        let member = self.seq(&[string, ws, colon, ws, value]);
        let more = self.seq(&[ws, comma, ws, member]);
        let more = self.repeat(more, 0, None);
        let members = self.seq(&[member, more]);
        let (open, close) = (self.lit("{"), self.lit("}"));
        let filled = self.seq(&[members, ws, close]);
        let body = self.choice(&[close, filled]);
        let object = self.seq(&[open, ws, body]);
        let more = self.seq(&[ws, comma, ws, value]);
        let more = self.repeat(more, 0, None);
        let elements = self.seq(&[value, more]);
        let (open, close) = (self.lit("["), self.lit("]"));
        let filled = self.seq(&[elements, ws, close]);
        let body = self.choice(&[close, filled]);
        let array = self.seq(&[open, ws, body]);
        let number = self.json_number();
        let (t, f, n) = (self.lit("true"), self.lit("false"), self.lit("null"));
        let boolean = self.choice(&[t, f]);
        let any = self.choice(&[object, array, string, number, boolean, n]);
        self.nodes[value] = Node::Forward(Some(any));
        value
    }

    /// The inside of a JSON string, up to its closing quote.
    pub fn string_content(&mut self) -> Id {
        self.add(Node::StrContent)
    }

    /// A JSON number; at the end of the input it waits for more (digits may follow).
    pub fn json_number(&mut self) -> Id {
        let minus = self.lit("-");
        let minus = self.optional(minus);
        let zero = self.lit("0");
        let d19 = self.add(Node::Chars(vec![('1', '9')], 1, Some(1)));
        let digits0 = self.add(Node::Chars(vec![('0', '9')], 0, None));
        let nonzero = self.seq(&[d19, digits0]);
        let int = self.choice(&[zero, nonzero]);
        let digits = self.add(Node::Chars(vec![('0', '9')], 1, None));
        let dot = self.lit(".");
        let frac = self.seq(&[dot, digits]);
        let frac = self.optional(frac);
        let (e, ee) = (self.lit("e"), self.lit("E"));
        let e = self.choice(&[e, ee]);
        let sign = self.add(Node::Chars(vec![('+', '+'), ('-', '-')], 1, Some(1)));
        let sign = self.optional(sign);
        let exp = self.seq(&[e, sign, digits]);
        let exp = self.optional(exp);
        let cont = self.add(Node::Chars(
            vec![('0', '9'), ('.', '.'), ('e', 'e'), ('E', 'E'), ('+', '+'), ('-', '-')],
            1,
            Some(1),
        ));
        let stop = self.add(Node::Not(cont));
        self.seq(&[minus, int, frac, exp, stop])
    }

    pub fn parse(&self, input: &str) -> Parsed {
        let mut ctx = Ctx { input: input.as_bytes(), ast: Vec::new() };
        let out = ctx.run(self, self.root, 0);
        Parsed { status: out.status, end: out.end, ast: ctx.ast, top: out.nodes }
    }
}

struct Ctx<'a> {
    input: &'a [u8],
    ast: Vec<AstNode>,
}

/// The length of the UTF-8 character starting with byte `b`.
fn char_len(b: u8) -> usize {
    match b {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

impl Ctx<'_> {
    fn run(&mut self, arena: &Arena, id: Id, pos: usize) -> Outcome {
        let input = self.input;
        match &arena.nodes[id] {
            Node::Eps => Outcome::new(Status::Success, pos),
            Node::End => Outcome::new(if pos >= input.len() { Status::Success } else { Status::Fail }, pos),
            Node::Lit(s) => {
                for (i, &b) in s.as_bytes().iter().enumerate() {
                    match input.get(pos + i) {
                        None => return Outcome::new(Status::NeedMore, pos + i),
                        Some(&c) if c != b => return Outcome::new(Status::Fail, pos),
                        _ => {}
                    }
                }
                Outcome::new(Status::Success, pos + s.len())
            }
            Node::Seq(parts) => {
                let (mut at, mut nodes) = (pos, Vec::new());
                for &p in parts {
                    let r = self.run(arena, p, at);
                    match r.status {
                        Status::Fail => return Outcome::new(Status::Fail, r.end),
                        Status::NeedMore => {
                            nodes.extend(r.nodes);
                            return Outcome { status: Status::NeedMore, end: r.end, nodes };
                        }
                        Status::Success => {
                            nodes.extend(r.nodes);
                            at = r.end;
                        }
                    }
                }
                Outcome { status: Status::Success, end: at, nodes }
            }
            Node::Choice(parts) => {
                for &p in parts {
                    let r = self.run(arena, p, pos);
                    if r.status != Status::Fail {
                        return r;
                    }
                }
                Outcome::new(Status::Fail, pos)
            }
            Node::Repeat(p, min, max) => {
                let (mut at, mut count, mut nodes) = (pos, 0, Vec::new());
                while max.is_none_or(|m| count < m) && at < input.len() {
                    let r = self.run(arena, *p, at);
                    match r.status {
                        Status::Success if r.end == at => break,
                        Status::Success => {
                            nodes.extend(r.nodes);
                            at = r.end;
                            count += 1;
                        }
                        Status::NeedMore => {
                            nodes.extend(r.nodes);
                            return Outcome { status: Status::NeedMore, end: r.end, nodes };
                        }
                        Status::Fail => break,
                    }
                }
                if count < *min {
                    let status = if at >= input.len() { Status::NeedMore } else { Status::Fail };
                    return Outcome { status, end: at, nodes };
                }
                Outcome { status: Status::Success, end: at, nodes }
            }
            Node::Peek(p) => {
                let r = self.run(arena, *p, pos);
                Outcome::new(r.status, pos)
            }
            Node::Not(p) => {
                let status = match self.run(arena, *p, pos).status {
                    Status::Success => Status::Fail,
                    Status::NeedMore => Status::NeedMore,
                    Status::Fail => Status::Success,
                };
                Outcome::new(status, pos)
            }
            Node::Until(delims) => {
                let mut at = pos;
                while at < input.len() {
                    let rest = &input[at..];
                    let hit = delims.iter().any(|d| {
                        let d = d.as_bytes();
                        rest.starts_with(d) || (rest.len() < d.len() && d.starts_with(rest))
                    });
                    if hit {
                        return Outcome::new(Status::Success, at);
                    }
                    let len = char_len(input[at]);
                    if at + len > input.len() {
                        // A character cut by the end of the text: more may come.
                        return Outcome::new(Status::NeedMore, at);
                    }
                    at += len;
                }
                Outcome::new(Status::NeedMore, at)
            }
            Node::Space => {
                let n = input[pos.min(input.len())..].iter().take_while(|c| is_c_space(**c)).count();
                Outcome::new(Status::Success, pos + n)
            }
            Node::Chars(ranges, min, max) => {
                let (mut at, mut count) = (pos, 0);
                let text = std::str::from_utf8(&input[pos.min(input.len())..]).unwrap_or_default();
                for c in text.chars() {
                    if max.is_some_and(|m| count >= m)
                        || !ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
                    {
                        break;
                    }
                    at += c.len_utf8();
                    count += 1;
                }
                if count < *min {
                    let status = if at >= input.len() { Status::NeedMore } else { Status::Fail };
                    return Outcome::new(status, at);
                }
                Outcome::new(Status::Success, at)
            }
            Node::StrContent => string_content(input, pos),
            Node::Tag(tag, p) => {
                let r = self.run(arena, *p, pos);
                if r.status == Status::Fail {
                    return r;
                }
                self.ast.push(AstNode { tag, start: pos, end: r.end, children: r.nodes });
                Outcome { status: r.status, end: r.end, nodes: vec![self.ast.len() - 1] }
            }
            Node::Atomic(p) => {
                let mut r = self.run(arena, *p, pos);
                if r.status == Status::NeedMore {
                    r.nodes.clear();
                }
                r
            }
            Node::Forward(p) => self.run(arena, p.expect("rule defined before parsing"), pos),
        }
    }
}

/// C's `isspace` in the "C" locale.
pub fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A JSON string's inside: stops before the closing quote; a cut escape waits for more.
fn string_content(input: &[u8], pos: usize) -> Outcome {
    let mut at = pos;
    while at < input.len() {
        match input[at] {
            b'"' => return Outcome::new(Status::Success, at),
            b'\\' => {
                let Some(&c) = input.get(at + 1) else { return Outcome::new(Status::NeedMore, at) };
                match c {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                    b'u' => {
                        for i in 0..4 {
                            match input.get(at + 2 + i) {
                                None => return Outcome::new(Status::NeedMore, at),
                                Some(h) if !h.is_ascii_hexdigit() => return Outcome::new(Status::Fail, pos),
                                _ => {}
                            }
                        }
                        at += 6;
                    }
                    _ => return Outcome::new(Status::Fail, pos),
                }
            }
            b => {
                let len = char_len(b);
                if at + len > input.len() {
                    return Outcome::new(Status::NeedMore, at);
                }
                at += len;
            }
        }
    }
    Outcome::new(Status::NeedMore, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(a: &Arena, input: &str) -> (Status, Vec<(&'static str, String)>) {
        let parsed = a.parse(input);
        let mut out = Vec::new();
        parsed.visit(&mut |n| out.push((n.tag, input[n.start..n.end].to_string())));
        (parsed.status, out)
    }

    /// Input that ends inside a literal, a string or a number is "need more", not a failure,
    /// and the tagged spans so far come back; an atomic part cut short gives none.
    #[test]
    fn cut_input_needs_more_and_keeps_what_it_has() {
        let mut a = Arena::default();
        let (open, json) = (a.lit("<c>"), a.json());
        let args = a.tag("args", json);
        let name = a.lit("fn");
        let name = a.tag("name", name);
        let name = a.atomic(name);
        let root = a.seq(&[open, name, args]);
        a.set_root(root);
        assert_eq!(
            tagged(&a, "<c>fn{\"a\": 1}"),
            (Status::Success, vec![("name", "fn".into()), ("args", "{\"a\": 1}".into())])
        );
        assert_eq!(
            tagged(&a, "<c>fn{\"a\": \"x"),
            (Status::NeedMore, vec![("name", "fn".into()), ("args", "{\"a\": \"x".into())])
        );
        // A number at the very end may go on: not taken yet.
        assert_eq!(
            tagged(&a, "<c>fn{\"a\": 12"),
            (Status::NeedMore, vec![("name", "fn".into()), ("args", "{\"a\": 12".into())])
        );
        assert_eq!(tagged(&a, "<c>f"), (Status::NeedMore, vec![]));
        assert_eq!(tagged(&a, "<d>"), (Status::Fail, vec![]));
        assert_eq!(tagged(&a, "<c>fn{\"a\": x}").0, Status::Fail);
    }

    /// `until` stops before its delimiter, or before a start of it that runs to the end.
    #[test]
    fn until_stops_before_a_possible_delimiter() {
        let mut a = Arena::default();
        let u = a.until(&["</t>"]);
        let body = a.tag("body", u);
        a.set_root(body);
        assert_eq!(tagged(&a, "ab</t>cd"), (Status::Success, vec![("body", "ab".into())]));
        assert_eq!(tagged(&a, "ab</"), (Status::Success, vec![("body", "ab".into())]));
        assert_eq!(tagged(&a, "ab<x"), (Status::NeedMore, vec![("body", "ab<x".into())]));
        assert_eq!(tagged(&a, "é</t>"), (Status::Success, vec![("body", "é".into())]));
    }
}
