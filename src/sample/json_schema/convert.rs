//! Schema nodes → GBNF rules, named after where they sit in the schema (`root`, `root-item`,
//! `name-kv`, `ref-defs-x` ...). Rules are kept sorted by name and written one per line, and a
//! name already taken by a different rule gets a number appended: this is what makes the text
//! identical to llama.cpp's for the same schema.

use super::ranges::min_max_int;
use super::schema::{Doc, Format, Node};
use super::value::Json;
use std::collections::{BTreeMap, HashSet};

/// Optional whitespace between tokens: at most one newline pair and 20 indent characters, so a
/// model cannot pad forever.
const SPACE_RULE: &str = "| \" \" | \"\\n\"{1,2} [ \\t]{0,20}";

/// The built-in rules (name, body, rules it uses).
const PRIMITIVES: &[(&str, &str, &[&str])] = &[
    ("boolean", "(\"true\" | \"false\")", &[]),
    ("decimal-part", "[0-9]{1,16}", &[]),
    ("integral-part", "[0] | [1-9] [0-9]{0,15}", &[]),
    (
        "number",
        "(\"-\"? integral-part) (\".\" decimal-part)? ([eE] [-+]? integral-part)?",
        &["integral-part", "decimal-part"],
    ),
    ("integer", "(\"-\"? integral-part)", &["integral-part"]),
    (
        "value",
        "object | array | string | number | boolean | null",
        &["object", "array", "string", "number", "boolean", "null"],
    ),
    (
        "object",
        "\"{\" space ( string \":\" space value (\",\" space string \":\" space value)* )? space \"}\"",
        &["string", "value"],
    ),
    ("array", "\"[\" space ( value (\",\" space value)* )? space \"]\"", &["value"]),
    (
        "uuid",
        "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12} \"\\\"\"",
        &[],
    ),
    ("char", "[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4})", &[]),
    ("string", "\"\\\"\" char* \"\\\"\"", &["char"]),
    ("null", "\"null\"", &[]),
];

/// The `format` rules (date / time pieces and the quoted strings made of them).
const FORMATS: &[(&str, &str, &[&str])] = &[
    ("date", "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [1-2] [0-9] | \"3\" [0-1] )", &[]),
    (
        "time",
        "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{3} )? ( \"Z\" | ( \"+\" | \"-\" ) ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )",
        &[],
    ),
    ("date-time", "date \"T\" time", &["date", "time"]),
    ("date-string", "\"\\\"\" date \"\\\"\"", &["date"]),
    ("time-string", "\"\\\"\" time \"\\\"\"", &["time"]),
    ("date-time-string", "\"\\\"\" date-time \"\\\"\"", &["date-time"]),
];

fn builtin(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    PRIMITIVES.iter().chain(FORMATS).find(|(n, _, _)| *n == name).map(|(_, body, deps)| (*body, *deps))
}

/// Names a schema position may not take as its rule name (it gets a `-` appended instead).
fn is_reserved(name: &str) -> bool {
    name == "root" || builtin(name).is_some()
}

/// A rule name: every run of characters other than ASCII letters, digits and `-` becomes `-`.
fn rule_name_of(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    out
}

/// A GBNF string literal for `text`: quotes, backslashes and line breaks escaped.
pub fn format_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `item` between `min` and `max` times (`i32::MAX` for no max), with `separator` between
/// repetitions when there is one.
pub fn build_repetition(item: &str, min: i32, max: i32, separator: &str) -> String {
    let has_max = max != i32::MAX;
    if max == 0 {
        return String::new();
    }
    if min == 0 && max == 1 {
        return format!("{item}?");
    }
    if separator.is_empty() {
        return match (min, has_max) {
            (1, false) => format!("{item}+"),
            (0, false) => format!("{item}*"),
            _ => format!("{item}{{{min},{}}}", if has_max { max.to_string() } else { String::new() }),
        };
    }
    let rest = build_repetition(
        &format!("({separator} {item})"),
        if min == 0 { 0 } else { min - 1 },
        if has_max { max - 1 } else { max },
        "",
    );
    let seq = format!("{item} {rest}");
    if min == 0 {
        format!("({seq})?")
    } else {
        seq
    }
}

/// A JSON value as the literal text that matches exactly it.
fn constant(v: &Json) -> String {
    format_literal(&v.dump())
}

pub(super) struct Converter<'d> {
    doc: &'d Doc,
    pub(super) rules: BTreeMap<String, String>,
    resolving: HashSet<String>,
    pub(super) errors: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl<'d> Converter<'d> {
    pub fn new(doc: &'d Doc) -> Converter<'d> {
        let mut rules = BTreeMap::new();
        rules.insert("space".to_string(), SPACE_RULE.to_string());
        Converter { doc, rules, resolving: HashSet::new(), errors: Vec::new(), warnings: Vec::new() }
    }

    /// Add `body` as `name` (sanitised); if that name holds a different rule, the first free
    /// `name0`, `name1` ... (or the one already holding `body`). Returns the name used.
    pub(super) fn add_rule(&mut self, name: &str, body: &str) -> String {
        let base = rule_name_of(name);
        if self.rules.get(&base).is_none_or(|b| b == body) {
            self.rules.insert(base.clone(), body.to_string());
            return base;
        }
        let mut i = 0;
        let key = loop {
            let key = format!("{base}{i}");
            if self.rules.get(&key).is_none_or(|b| b == body) {
                break key;
            }
            i += 1;
        };
        self.rules.insert(key.clone(), body.to_string());
        key
    }

    /// A built-in rule under its own name, with the built-ins it uses.
    pub(super) fn add_primitive(&mut self, name: &str) -> String {
        self.add_builtin_as(name, name)
    }

    fn add_builtin_as(&mut self, as_name: &str, builtin_name: &str) -> String {
        let Some((body, deps)) = builtin(builtin_name) else {
            self.errors.push(format!("Rule {builtin_name} not known"));
            return String::new();
        };
        let n = self.add_rule(as_name, body);
        for dep in deps {
            if !self.rules.contains_key(*dep) {
                self.add_builtin_as(dep, dep);
            }
        }
        n
    }

    /// A primitive type at `rule_name`: the root gets the body itself, anything else refers to
    /// the shared built-in rule.
    fn primitive(&mut self, rule_name: &str, ty: &str) -> String {
        self.add_builtin_as(if rule_name == "root" { "root" } else { ty }, ty)
    }

    pub fn grammar(self) -> Result<(String, Vec<String>), String> {
        if !self.errors.is_empty() {
            return Err(format!("JSON schema conversion failed:\n{}", self.errors.join("\n")));
        }
        let mut out = String::new();
        for (name, body) in &self.rules {
            out.push_str(name);
            out.push_str(" ::= ");
            out.push_str(body);
            out.push('\n');
        }
        Ok((out, self.warnings))
    }

    fn union(&mut self, name: &str, alts: &[Node]) -> String {
        let sep = if name.is_empty() { "alternative-" } else { "-" };
        let rules: Vec<String> =
            alts.iter().enumerate().map(|(i, alt)| self.visit(alt, &format!("{name}{sep}{i}"))).collect();
        rules.join(" | ")
    }

    /// A `$ref` as the rule named after its path (`#/$defs/a` → `ref-defs-a`), converting the
    /// target the first time; a reference back into itself just names the rule.
    fn reference(&mut self, r: &str) -> String {
        let fragment = r.split_once('#').map_or(r, |(_, f)| f);
        let name = format!("ref{}", rule_name_of(fragment));
        if self.rules.contains_key(&name) || self.resolving.contains(r) {
            return name;
        }
        let Some(target) = self.doc.refs.get(r) else {
            self.errors.push(format!("Unresolved $ref {r}"));
            return String::new();
        };
        self.resolving.insert(r.to_string());
        let out = self.visit(target, &name);
        self.resolving.remove(r);
        out
    }

    /// A string rule accepting any key but `names`: a trie of the names where each step either
    /// leaves the trie (any other character, then anything) or goes on to a longer string.
    fn not_strings(&mut self, names: &[String]) -> String {
        #[derive(Default)]
        struct TrieNode {
            children: BTreeMap<char, usize>,
            terminal: bool,
        }
        let mut nodes = vec![TrieNode::default()];
        for name in names {
            let mut cur = 0;
            for c in name.chars() {
                cur = match nodes[cur].children.get(&c) {
                    Some(&next) => next,
                    None => {
                        nodes.push(TrieNode::default());
                        let next = nodes.len() - 1;
                        nodes[cur].children.insert(c, next);
                        next
                    }
                };
            }
            nodes[cur].terminal = true;
        }
        let ch = self.add_primitive("char");
        fn walk(nodes: &[TrieNode], idx: usize, ch: &str, out: &mut String) {
            let node = &nodes[idx];
            let mut rejects = String::new();
            for (n, (&c, &child)) in node.children.iter().enumerate() {
                rejects.push(c);
                if n > 0 {
                    out.push_str(" | ");
                }
                out.push('[');
                out.push(c);
                out.push(']');
                if nodes[child].children.is_empty() {
                    out.push_str(&format!(" {ch}+"));
                } else {
                    out.push_str(" (");
                    walk(nodes, child, ch, out);
                    out.push(')');
                }
            }
            if !node.children.is_empty() {
                out.push_str(&format!(" | [^\"{rejects}] {ch}*"));
            }
        }
        let mut out = String::from("[\"] ( ");
        walk(&nodes, 0, &ch, &mut out);
        out.push_str(" )");
        if !nodes[0].terminal {
            out.push('?');
        }
        out.push_str(" [\"]");
        out
    }

    /// `{ required, in order (optional ones, each at most once, in order) }`; extra keys (`*`) may
    /// repeat and come last.
    fn object_rule(
        &mut self,
        properties: &[(&str, &Node)],
        required: &HashSet<&str>,
        name: &str,
        additional: Option<&Node>,
    ) -> String {
        let dash = if name.is_empty() { "" } else { "-" };
        let mut required_props: Vec<String> = Vec::new();
        let mut optional_props: Vec<String> = Vec::new();
        let mut kv_rules: BTreeMap<String, String> = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        for (prop, schema) in properties {
            let value = self.visit(schema, &format!("{name}{dash}{prop}"));
            let key = format_literal(&Json::Str(prop.to_string()).dump());
            let kv =
                self.add_rule(&format!("{name}{dash}{prop}-kv"), &format!("{key} space \":\" space {value}"));
            kv_rules.insert(prop.to_string(), kv);
            if required.contains(prop) {
                required_props.push(prop.to_string());
            } else {
                optional_props.push(prop.to_string());
            }
            names.push(prop.to_string());
        }
        if let Some(extra) = additional {
            let sub = format!("{name}{dash}additional");
            let value = match extra {
                Node::Any => self.add_primitive("value"),
                other => self.visit(other, &format!("{sub}-value")),
            };
            let key = if names.is_empty() {
                self.add_primitive("string")
            } else {
                let body = self.not_strings(&names);
                self.add_rule(&format!("{sub}-k"), &body)
            };
            let kv = self.add_rule(&format!("{sub}-kv"), &format!("{key} \":\" space {value}"));
            kv_rules.insert("*".into(), kv);
            optional_props.push("*".into());
        }
        if required_props.is_empty() && optional_props.is_empty() {
            return "\"{\" space \"}\"".into();
        }
        let kv = |k: &str| kv_rules.get(k).cloned().unwrap_or_default();
        let mut rule = String::from("\"{\" space ");
        rule.push_str(&required_props.iter().map(|k| kv(k)).collect::<Vec<_>>().join(" \",\" space "));
        if !optional_props.is_empty() {
            rule.push_str(" (");
            if !required_props.is_empty() {
                rule.push_str(" \",\" space ( ");
            }
            let alts: Vec<String> = (0..optional_props.len())
                .map(|i| self.optional_tail(&optional_props[i..], false, name, &kv))
                .collect();
            rule.push_str(&alts.join(" | "));
            if !required_props.is_empty() {
                rule.push_str(" )");
            }
            rule.push_str(" )?");
        }
        rule.push_str(" space \"}\"");
        rule
    }

    /// The optional properties from `keys[0]` on: the first (given, or behind a comma when
    /// `behind_comma`), then a `-rest` rule for the others.
    fn optional_tail(
        &mut self,
        keys: &[String],
        behind_comma: bool,
        name: &str,
        kv: &dyn Fn(&str) -> String,
    ) -> String {
        let Some(k) = keys.first() else { return String::new() };
        let kv_name = kv(k);
        let comma = format!("( \",\" space {kv_name} )");
        let mut out = match (behind_comma, k == "*") {
            (true, true) => format!("{comma}*"),
            (true, false) => format!("{comma}?"),
            (false, true) => format!("{kv_name} {comma}*"),
            (false, false) => kv_name,
        };
        if keys.len() > 1 {
            let dash = if name.is_empty() { "" } else { "-" };
            let rest = self.optional_tail(&keys[1..], true, name, kv);
            out.push(' ');
            out.push_str(&self.add_rule(&format!("{name}{dash}{k}-rest"), &rest));
        }
        out
    }

    /// `allOf`: the object properties of every part merged (required where the part is not an
    /// `anyOf` branch), or, when parts are enums, the values all of them share.
    fn all_of(&mut self, parts: &[Node], name: &str, rule_name: &str) -> String {
        struct Parts<'n> {
            doc: &'n Doc,
            /// the references being followed, so that one reaching itself stops (llama.cpp
            /// would recurse until the stack overflows)
            following: Vec<&'n str>,
            required: HashSet<&'n str>,
            properties: Vec<(&'n str, &'n Node)>,
            enum_counts: BTreeMap<String, usize>,
        }
        fn add<'n>(cx: &mut Parts<'n>, node: &'n Node, is_required: bool) {
            match node {
                Node::Ref(r) => {
                    if let Some(target) = cx.doc.refs.get(r).filter(|_| !cx.following.contains(&r.as_str())) {
                        cx.following.push(r);
                        add(cx, target, is_required);
                        cx.following.pop();
                    }
                }
                Node::Object { properties: props, .. } => {
                    for p in props {
                        cx.properties.push((&p.name, &p.schema));
                        if is_required {
                            cx.required.insert(&p.name);
                        }
                    }
                }
                Node::Enum(values) => {
                    for v in values {
                        *cx.enum_counts.entry(constant(v)).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        let mut cx = Parts {
            doc: self.doc,
            following: Vec::new(),
            required: HashSet::new(),
            properties: Vec::new(),
            enum_counts: BTreeMap::new(),
        };
        for part in parts {
            match part {
                Node::AnyOf(alts) => {
                    for alt in alts {
                        add(&mut cx, alt, false);
                    }
                }
                other => add(&mut cx, other, true),
            }
        }
        let Parts { required, properties, enum_counts, .. } = cx;
        let shared: Vec<&str> =
            enum_counts.iter().filter(|(_, &n)| n == parts.len()).map(|(v, _)| v.as_str()).collect();
        if !shared.is_empty() {
            let body = format!("({})", shared.join(" | "));
            return self.add_rule(rule_name, &body);
        }
        let body = self.object_rule(&properties, &required, name, None);
        self.add_rule(rule_name, &body)
    }

    /// The rule for `node` at position `name` ("" for the root); returns the rule's name.
    pub fn visit(&mut self, node: &Node, name: &str) -> String {
        let rule_name = if is_reserved(name) {
            format!("{name}-")
        } else if name.is_empty() {
            "root".to_string()
        } else {
            name.to_string()
        };
        let sub = if name.is_empty() { String::new() } else { format!("{name}-") };
        match node {
            Node::Ref(r) => {
                let target = self.reference(r);
                self.add_rule(&rule_name, &target)
            }
            Node::AnyOf(alts) => {
                let body = self.union(name, alts);
                self.add_rule(&rule_name, &body)
            }
            Node::AllOf(parts) => self.all_of(parts, name, &rule_name),
            Node::Const(v) => self.add_rule(&rule_name, &constant(v)),
            Node::Enum(values) => {
                let body = format!("({})", values.iter().map(constant).collect::<Vec<_>>().join(" | "));
                self.add_rule(&rule_name, &body)
            }
            Node::Object { properties, additional } => {
                if properties.is_empty() && matches!(additional.as_deref(), Some(Node::Any)) {
                    let object = self.add_primitive("object");
                    return self.add_rule(&rule_name, &object);
                }
                let props: Vec<(&str, &Node)> =
                    properties.iter().map(|p| (p.name.as_str(), &p.schema)).collect();
                let required: HashSet<&str> =
                    properties.iter().filter(|p| p.required).map(|p| p.name.as_str()).collect();
                let body = self.object_rule(&props, &required, name, additional.as_deref());
                self.add_rule(&rule_name, &body)
            }
            Node::Tuple(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.visit(item, &format!("{sub}tuple-{i}")))
                    .collect();
                let body = format!("\"[\" space {} space \"]\"", parts.join(" \",\" space "));
                self.add_rule(&rule_name, &body)
            }
            Node::Array { items, min_items, max_items } => {
                if matches!(**items, Node::Any) && *min_items == 0 && *max_items < 0 {
                    return self.primitive(&rule_name, "array");
                }
                let item = self.visit(items, &format!("{sub}item"));
                let max = if *max_items < 0 { i32::MAX } else { *max_items };
                let body = format!(
                    "\"[\" space {} space \"]\"",
                    build_repetition(&item, *min_items, max, "\",\" space")
                );
                self.add_rule(&rule_name, &body)
            }
            Node::String { pattern, format, min_length, max_length } => {
                if !pattern.is_empty() {
                    return self.visit_pattern(pattern, &rule_name);
                }
                let quoted = match format {
                    Format::Uuid => return self.primitive(&rule_name, "uuid"),
                    Format::Date => "date-string",
                    Format::Time => "time-string",
                    Format::DateTime => "date-time-string",
                    Format::None => "",
                };
                if !quoted.is_empty() {
                    let prim = self.add_primitive(quoted);
                    return self.add_rule(&rule_name, &prim);
                }
                if *min_length > 0 || *max_length >= 0 {
                    let ch = self.add_primitive("char");
                    let max = if *max_length < 0 { i32::MAX } else { *max_length };
                    let body = format!("\"\\\"\" {} \"\\\"\"", build_repetition(&ch, *min_length, max, ""));
                    return self.add_rule(&rule_name, &body);
                }
                self.primitive(&rule_name, "string")
            }
            Node::Integer { min, max } => {
                if *min == i64::MIN && *max == i64::MAX {
                    return self.primitive(&rule_name, "integer");
                }
                let mut body = String::from("(");
                min_max_int(&mut body, *min, *max, 16, true);
                body.push(')');
                self.add_rule(&rule_name, &body)
            }
            Node::Number => self.primitive(&rule_name, "number"),
            Node::Boolean => self.primitive(&rule_name, "boolean"),
            Node::Null => self.primitive(&rule_name, "null"),
            Node::Any => {
                let value = self.add_primitive("value");
                self.add_rule(&rule_name, &value)
            }
        }
    }
}
