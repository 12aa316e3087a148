//! The hypervisor's layering check: every module of `hypervisor/src` sits
//! in one of the layers `hypervisor/layers.toml` declares, lowest first; a
//! module may use what its own layer and the layers below it define, never
//! what a higher layer does, and no modules may use each other in a circle.
//!
//! It reads the source as text: `use` trees, and `crate::` / `super::` /
//! `self::` paths written inline, outside comments and string literals. A
//! path names the module of its longest prefix that is a module; a name a
//! module re-exports (`pub use inner::*`, `pub use inner::{A, B}`) is
//! followed to the module that defines it, so a folder's `mod.rs` that
//! re-exports does not show up as a false circle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One module: its path under `crate::` (`""` for the crate root) and the
/// file that holds it.
#[derive(Debug, Clone)]
pub struct Module {
    pub path: String,
    pub file: PathBuf,
    /// Code with comments and literals blanked out.
    code: String,
    /// Lines of the file outside its test modules.
    pub lines: usize,
}

/// The declared order of layers.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// (layer name, module path prefixes), lowest layer first.
    pub layers: Vec<(String, Vec<String>)>,
}

impl Layers {
    /// Reads the declaration: `[name]` starts a layer (lowest first), each
    /// following non-blank line names a module and those under it, or with
    /// `=` in front that module alone; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Layers, String> {
        let mut layers: Vec<(String, Vec<String>)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                layers.push((name.trim().to_string(), Vec::new()));
            } else if let Some((_, mods)) = layers.last_mut() {
                let path = line.strip_prefix('=').unwrap_or(line);
                if !path.split("::").all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                {
                    return Err(format!("line {}: `{line}` is not a module path", n + 1));
                }
                mods.push(line.to_string());
            } else {
                return Err(format!("line {}: `{line}` comes before any [layer]", n + 1));
            }
        }
        if layers.is_empty() {
            return Err("no layer is declared".into());
        }
        Ok(Layers { layers })
    }

    /// The layer of `module` (index, lowest 0): its longest listed prefix.
    pub fn layer_of(&self, module: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, (_, mods)) in self.layers.iter().enumerate() {
            for m in mods {
                let matches = match m.strip_prefix('=') {
                    Some(exact) => module == exact,
                    None => module == m || module.starts_with(&format!("{m}::")),
                };
                if matches && best.is_none_or(|(len, _)| m.len() > len) {
                    best = Some((m.len(), i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    pub fn name(&self, i: usize) -> &str {
        &self.layers[i].0
    }
}

/// What the check found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A module no layer lists.
    Unplaced { module: String },
    /// `from` (in a lower layer) uses `to` (in a higher one) through `name`.
    Upward { from: String, from_layer: String, to: String, to_layer: String, name: String },
    /// Modules that use each other in a circle, with one edge's names each.
    Circle { modules: Vec<String> },
    /// A file longer than a reader can hold in mind.
    TooLong { file: String, lines: usize },
    /// A folder with more files than a glance takes in.
    TooManyFiles { folder: String, files: usize },
}

/// Lines of non-test code a file may have.
pub const MAX_LINES: usize = 900;
/// Files a folder may hold.
pub const MAX_FILES: usize = 15;

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unplaced { module } => {
                write!(f, "module `{module}` is in no layer: add it to hypervisor/layers.toml")
            }
            Problem::Upward { from, from_layer, to, to_layer, name } => {
                write!(f, "`{from}` ({from_layer}) uses `{name}` from `{to}` ({to_layer}), a layer above it")
            }
            Problem::Circle { modules } => write!(f, "modules use each other in a circle: {}", modules.join(" -> ")),
            Problem::TooLong { file, lines } => {
                write!(f, "{file} has {lines} lines of non-test code (at most {MAX_LINES}): split it by what it does")
            }
            Problem::TooManyFiles { folder, files } => {
                write!(f, "{folder}/ holds {files} files (at most {MAX_FILES}): group them in subfolders")
            }
        }
    }
}

/// The result of a check.
#[derive(Debug, Default)]
pub struct Report {
    pub modules: usize,
    pub edges: usize,
    pub problems: Vec<Problem>,
}

/// Blanks out comments, string and char literals (keeping line breaks),
/// so that paths inside them are not read as code.
pub fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, s: &[u8]| out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    while i < b.len() {
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i..].starts_with(b"//") {
            let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
            blank(&mut out, &b[i..end]);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &b[i..j.min(b.len())]);
            i = j;
        } else if !prev_ident
            && (b[i..].starts_with(b"r#\"") || b[i..].starts_with(b"r\"") || b[i..].starts_with(b"br\""))
        {
            let start = i;
            let mut j = i + if b[i] == b'b' { 2 } else { 1 };
            let mut hashes = 0;
            while b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            j = (j + close.len()).min(b.len());
            blank(&mut out, &b[start..j]);
            i = j;
        } else if b[i] == b'"' {
            let start = i;
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j = (j + 1).min(b.len());
            blank(&mut out, &b[start..j]);
            i = j;
        } else if b[i] == b'\'' {
            // A char literal ('a', '\n', '\u{..}'), else a lifetime.
            let rest = &b[i + 1..];
            let len = if rest.first() == Some(&b'\\') {
                rest.iter().skip(1).position(|&c| c == b'\'').map(|p| p + 2)
            } else if rest.len() >= 2 && rest[1] == b'\'' {
                Some(2)
            } else {
                std::str::from_utf8(rest).ok().and_then(|s| {
                    let c = s.chars().next()?;
                    (s[c.len_utf8()..].starts_with('\'')).then_some(c.len_utf8() + 1)
                })
            };
            match len {
                Some(l) => {
                    blank(&mut out, &b[i..i + 1 + l]);
                    i += 1 + l;
                }
                None => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Every path a `use` tree names, e.g. `crate::a::{b, c::{d, e as f}}`
/// gives `crate::a::b`, `crate::a::c::d`, `crate::a::c::e`.
pub fn use_paths(tree: &str) -> Vec<String> {
    fn walk(prefix: &str, s: &str, out: &mut Vec<String>) {
        let s = s.trim();
        let s = if s == "self" && !prefix.is_empty() { "self" } else { s };
        let s = s.trim();
        if let Some(open) = s.find('{') {
            let head = s[..open].trim().trim_end_matches("::");
            let close = s.rfind('}').unwrap_or(s.len());
            let inner = &s[open + 1..close];
            let base = join(prefix, head);
            for part in split_top(inner) {
                walk(&base, part, out);
            }
        } else {
            let s = s.split(" as ").next().unwrap_or(s).trim();
            if !s.is_empty() {
                out.push(join(prefix, s));
            }
        }
    }
    fn join(a: &str, b: &str) -> String {
        match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a}::{b}"),
        }
    }
    fn split_top(s: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
    }
    let mut out = Vec::new();
    walk("", tree, &mut out);
    out
}

/// What a `use` tree brings into scope: each path (a trailing `self`
/// dropped) with the name it is known by (None for a glob).
pub fn use_bindings(tree: &str) -> Vec<(String, Option<String>)> {
    // Walk the tree again keeping `as` names: split on the top level the
    // same way use_paths does, by rebuilding from its output.
    let mut out = Vec::new();
    let renamed = renames(tree);
    for p in use_paths(tree) {
        let p = p.strip_suffix("::self").map(str::to_string).unwrap_or(p);
        if p.ends_with("::*") {
            out.push((p, None));
            continue;
        }
        let last = p.rsplit("::").next().unwrap_or(&p).to_string();
        let alias = renamed.iter().find(|(orig, _)| p.ends_with(orig.as_str())).map(|(_, a)| a.clone());
        out.push((p.clone(), Some(alias.unwrap_or(last))));
    }
    out
}

/// `x as y` pairs of a use tree: (the path written before `as`, y).
fn renames(tree: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let toks: Vec<&str> = tree.split([',', '{', '}']).collect();
    for t in toks {
        if let Some((orig, alias)) = t.split_once(" as ") {
            let orig = orig.trim();
            let orig = orig.strip_suffix("::self").unwrap_or(orig);
            let orig = if orig == "self" { "" } else { orig };
            out.push((orig.to_string(), alias.trim().to_string()));
        }
    }
    out
}

/// The `use` trees of stripped code: (is it `pub use`, the tree).
fn use_trees(code: &str) -> Vec<(bool, String)> {
    use_spans(code).into_iter().map(|(public, tree, _)| (public, tree)).collect()
}

/// `use_trees` with where each statement is (from `use` to its `;`).
fn use_spans(code: &str) -> Vec<(bool, String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while let Some(p) = code[i..].find("use ") {
        let at = i + p;
        i = at + 4;
        let word_start = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        if !word_start {
            continue;
        }
        // `use` as a statement: at a line start after optional `pub(...)`.
        let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
        let before = code[line_start..at].trim();
        let public = before.starts_with("pub");
        if !(before.is_empty() || before.starts_with("pub") || before.ends_with(';') || before.ends_with('{')) {
            continue;
        }
        let Some(end) = code[i..].find(';') else { break };
        out.push((public, code[i..i + end].split_whitespace().collect::<Vec<_>>().join(" "), at..i + end + 1));
        i += end;
    }
    out
}

/// Paths written in code (`crate::a::b(...)`, `super::x::Y`, `child::f()`
/// for a submodule `child`), in code without its `use` statements.
fn inline_paths(code: &str, children: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let roots: Vec<String> =
        ["crate", "super", "self"].iter().copied().chain(children.iter().copied()).map(|r| format!("{r}::")).collect();
    for root in &roots {
        let root = root.as_str();
        let mut i = 0;
        while let Some(p) = code[i..].find(root) {
            let at = i + p;
            i = at + root.len();
            let b = code.as_bytes();
            // Part of a longer path (`xen_abi::sched::X`) or a macro's `$crate`.
            if at > 0 && (b[at - 1].is_ascii_alphanumeric() || matches!(b[at - 1], b'_' | b'$' | b':')) {
                continue;
            }
            // `super::super::x`, `crate::a::b`: identifiers joined by `::`.
            let mut end = at;
            let bytes = code.as_bytes();
            loop {
                let seg_start = end;
                while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                    end += 1;
                }
                if end == seg_start {
                    break;
                }
                if code[end..].starts_with("::")
                    && code[end + 2..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                {
                    end += 2;
                } else {
                    break;
                }
            }
            out.push(code[at..end].to_string());
        }
    }
    out
}

fn module_path(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    match stem {
        "lib" if parts.is_empty() => {}
        "main" if parts.is_empty() => return None,
        "mod" => {}
        s => parts.push(s.to_string()),
    }
    Some(parts.join("::"))
}

/// Reads every module of the crate whose sources are in `src`.
pub fn read_crate(src: &Path) -> Result<Vec<Module>, String> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in rd {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Some(path) = module_path(src, &f) else { continue };
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let (code, test_lines) = without_tests(&strip(&text));
        out.push(Module { path, file: f, code, lines: text.lines().count() - test_lines });
    }
    // Modules only tests compile (`#[cfg(test)] mod fake;`) are no part of
    // the architecture.
    let test_only: BTreeSet<String> = out
        .iter()
        .flat_map(|m| {
            let code = &m.code;
            let mut found = Vec::new();
            let mut i = 0;
            while let Some(p) = code[i..].find("#[cfg(test)]") {
                let after = code[i + p + 12..].trim_start();
                let after = after.strip_prefix("pub(crate) ").or_else(|| after.strip_prefix("pub ")).unwrap_or(after);
                if let Some(rest) = after.strip_prefix("mod ") {
                    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    found.push(join(&m.path, &name));
                }
                i += p + 12;
            }
            found
        })
        .collect();
    out.retain(|m| !test_only.contains(&m.path));
    Ok(out)
}

/// Code without its inline `#[cfg(test)] mod name { ... }` blocks, and how
/// many lines those took.
fn without_tests(code: &str) -> (String, usize) {
    let mut out = code.to_string();
    let mut test_lines = 0;
    let mut from = 0;
    while let Some(p) = out[from..].find("#[cfg(test)]") {
        let at = from + p;
        let rest = &out[at + 12..];
        let trimmed = rest.trim_start();
        let is_block =
            trimmed.starts_with("mod ") || trimmed.starts_with("pub(crate) mod ") || trimmed.starts_with("pub mod ");
        let open = rest.find('{');
        let semi = rest.find(';');
        match (is_block, open) {
            (true, Some(o)) if semi.is_none_or(|s| o < s) => {
                let mut depth = 0;
                let mut end = out.len();
                for (i, c) in out[at + 12 + o..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = at + 12 + o + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                test_lines += out[at..end].matches('\n').count() + 1;
                let blank: String = out[at..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
                out.replace_range(at..end, &blank);
                from = end;
            }
            _ => from = at + 12,
        }
    }
    (out, test_lines)
}

/// Names a module defines itself (items and inline modules), and the
/// macros it exports at the crate root.
fn defined_names(code: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut macros = BTreeSet::new();
    let kws = ["fn", "struct", "enum", "const", "static", "trait", "type", "mod", "union"];
    let toks: Vec<&str> =
        code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '!')).filter(|t| !t.is_empty()).collect();
    for w in toks.windows(2) {
        if kws.contains(&w[0]) {
            names.insert(w[1].to_string());
        }
        if w[0] == "macro_rules!" {
            macros.insert(w[1].to_string());
        }
    }
    (names, macros)
}

/// What a module defines, and its `use` trees (is it `pub use`, the tree).
type ModuleNames = (BTreeSet<String>, Vec<(bool, String)>);

struct Crate {
    modules: BTreeMap<String, ModuleNames>,
    /// Macro name -> module that defines it (`#[macro_export]`ed to the root).
    macros: BTreeMap<String, String>,
}

impl Crate {
    fn new(mods: &[Module]) -> Crate {
        let mut modules = BTreeMap::new();
        let mut macros = BTreeMap::new();
        for m in mods {
            let (names, ms) = defined_names(&m.code);
            for name in ms {
                macros.insert(name, m.path.clone());
            }
            modules.insert(m.path.clone(), (names, use_trees(&m.code)));
        }
        Crate { modules, macros }
    }

    /// Makes `path` (as written in module `at`) absolute: segments from
    /// the crate root, `crate`/`super`/`self` resolved, and a first segment
    /// naming a submodule of `at` read as `self::`. None for paths into
    /// other crates.
    fn absolute(&self, at: &str, path: &str) -> Option<Vec<String>> {
        let mut segs: Vec<&str> = path.split("::").collect();
        let mut base: Vec<String> = if at.is_empty() { Vec::new() } else { at.split("::").map(String::from).collect() };
        match segs.first().copied() {
            Some("crate") => {
                base.clear();
                segs.remove(0);
            }
            Some("self") => {
                segs.remove(0);
            }
            Some("super") => {
                while segs.first() == Some(&"super") {
                    base.pop()?;
                    segs.remove(0);
                }
            }
            Some(first) if self.modules.contains_key(&join(at, first)) => {}
            _ => return None,
        }
        base.extend(segs.iter().map(|s| s.to_string()));
        Some(base)
    }

    /// The module a path leads to: its longest prefix that is a module,
    /// followed through that module's `pub use` when the next segment is a
    /// name it re-exports rather than defines.
    fn resolve(&self, segs: &[String], depth: usize) -> Option<String> {
        if depth > 8 {
            return None;
        }
        if segs.len() == 1
            && let Some(m) = self.macros.get(&segs[0])
        {
            return Some(m.clone());
        }
        let mut k = segs.len();
        while k > 0 && !self.modules.contains_key(&segs[..k].join("::")) {
            k -= 1;
        }
        let module = segs[..k].join("::");
        let Some((names, uses)) = self.modules.get(&module) else { return Some(module) };
        let Some(next) = segs.get(k) else { return Some(module) };
        if next == "*" || names.contains(next) {
            return Some(module);
        }
        for (_, tree) in uses.iter().filter(|(public, _)| *public) {
            for p in use_paths(tree) {
                let explicit = p.rsplit("::").next() == Some(next.as_str());
                let glob = p.ends_with("::*");
                if !explicit && !glob {
                    continue;
                }
                let written = if glob { format!("{}::{next}", &p[..p.len() - 3]) } else { p.clone() };
                let Some(abs) = self.absolute(&module, &written) else { continue };
                let Some(found) = self.resolve(&abs, depth + 1) else { continue };
                if found != module && (explicit || self.modules[&found].0.contains(next)) {
                    return Some(found);
                }
            }
        }
        Some(module)
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() { b.to_string() } else { format!("{a}::{b}") }
}

/// The modules each module uses: (from, to, the name used). A module
/// imported as a module (`use crate::domain;`) is not itself a use: the
/// paths through it (`domain::find(..)`) are. A folder's `mod.rs`
/// re-exporting its submodules (`pub use child::...`) and declaring them is
/// not a use of them either; everything else is.
pub fn edges(mods: &[Module]) -> Vec<(String, String, String)> {
    let krate = Crate::new(mods);
    let mut out = BTreeSet::new();
    for m in mods.iter().filter(|m| !m.path.is_empty()) {
        let add = |segs: &[String], written: &str, public: bool, out: &mut BTreeSet<(String, String, String)>| {
            let Some(to) = krate.resolve(segs, 0) else { return };
            if to == m.path || to.is_empty() || (public && to.starts_with(&join(&m.path, ""))) {
                return;
            }
            let name = written.rsplit("::").next().unwrap_or(written).to_string();
            out.insert((m.path.clone(), to, name));
        };
        // Names that stand for modules here: submodules, and modules imported.
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in krate.modules.keys() {
            if let Some(child) = k.strip_prefix(&join(&m.path, "")).filter(|c| !c.contains("::")) {
                aliases.insert(child.to_string(), k.split("::").map(String::from).collect());
            }
        }
        let spans = use_spans(&m.code);
        for (public, tree, _) in &spans {
            for (p, alias) in use_bindings(tree) {
                let Some(abs) = krate.absolute(&m.path, &p) else { continue };
                let is_module = krate.modules.contains_key(&abs.join("::"));
                match alias {
                    Some(a) if is_module => {
                        aliases.insert(a, abs);
                    }
                    _ => add(&abs, &p, *public, &mut out),
                }
            }
        }
        let mut code = m.code.clone();
        for (_, _, span) in spans {
            code.replace_range(span.clone(), &" ".repeat(span.len()));
        }
        let roots: Vec<&str> = aliases.keys().map(String::as_str).collect();
        for p in inline_paths(&code, &roots) {
            let first = p.split("::").next().unwrap_or("");
            let abs = match aliases.get(first) {
                Some(base) if !matches!(first, "crate" | "super" | "self") => {
                    let mut a = base.clone();
                    a.extend(p.split("::").skip(1).map(String::from));
                    Some(a)
                }
                _ => krate.absolute(&m.path, &p),
            };
            if let Some(abs) = abs {
                add(&abs, &p, false, &mut out);
            }
        }
    }
    out.into_iter().collect()
}

/// Strongly connected components of more than one module (Tarjan).
fn circles(nodes: &[String], adj: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        adj: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T<'_>, v: &str) {
        t.index.insert(v.to_string(), t.next);
        t.low.insert(v.to_string(), t.next);
        t.next += 1;
        t.stack.push(v.to_string());
        t.on.insert(v.to_string());
        let succ: Vec<String> = t.adj.get(v).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for w in succ {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low[v];
                t.low.insert(v.to_string(), lv.min(lw));
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low[v];
                t.low.insert(v.to_string(), lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for n in nodes {
        if !t.index.contains_key(n) {
            visit(&mut t, n);
        }
    }
    t.out
}

/// Checks modules against the declared layers.
pub fn check(mods: &[Module], layers: &Layers) -> Report {
    let mut report = Report { modules: mods.len(), ..Report::default() };
    for m in mods.iter().filter(|m| !m.path.is_empty()) {
        if layers.layer_of(&m.path).is_none() {
            report.problems.push(Problem::Unplaced { module: m.path.clone() });
        }
    }
    let es = edges(mods);
    report.edges = es.len();
    let mut adj: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen_upward = BTreeSet::new();
    for (from, to, name) in &es {
        adj.entry(from.clone()).or_default().insert(to.clone());
        if let (Some(lf), Some(lt)) = (layers.layer_of(from), layers.layer_of(to))
            && lt > lf
            && seen_upward.insert((from.clone(), to.clone()))
        {
            report.problems.push(Problem::Upward {
                from: from.clone(),
                from_layer: layers.name(lf).to_string(),
                to: to.clone(),
                to_layer: layers.name(lt).to_string(),
                name: name.clone(),
            });
        }
    }
    let nodes: Vec<String> = mods.iter().map(|m| m.path.clone()).collect();
    for c in circles(&nodes, &adj) {
        report.problems.push(Problem::Circle { modules: c });
    }
    let mut per_folder: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for m in mods {
        if m.lines > MAX_LINES {
            report.problems.push(Problem::TooLong { file: m.file.display().to_string(), lines: m.lines });
        }
        *per_folder.entry(m.file.parent().map(Path::to_path_buf).unwrap_or_default()).or_default() += 1;
    }
    for (folder, files) in per_folder {
        if files > MAX_FILES {
            report.problems.push(Problem::TooManyFiles { folder: folder.display().to_string(), files });
        }
    }
    report
}

/// The check on the hypervisor crate of this workspace.
pub fn check_hypervisor(root: &Path) -> Result<Report, String> {
    let decl = root.join("hypervisor/layers.toml");
    let text = std::fs::read_to_string(&decl).map_err(|e| format!("{}: {e}", decl.display()))?;
    let layers = Layers::parse(&text).map_err(|e| format!("{}: {e}", decl.display()))?;
    let mods = read_crate(&root.join("hypervisor/src"))?;
    Ok(check(&mods, &layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> Vec<Module> {
        files
            .iter()
            .filter_map(|(f, src)| {
                let path = module_path(Path::new("src"), &Path::new("src").join(f))?;
                let (code, test_lines) = without_tests(&strip(src));
                Some(Module { path, file: PathBuf::from(f), code, lines: src.lines().count() - test_lines })
            })
            .collect()
    }

    const LAYERS: &str = "# lowest first\n[low]\nutil\n[mid]\ndomain\nevent::table\n[high]\nevent\nboot\n";

    #[test]
    fn use_trees_give_every_path() {
        assert_eq!(
            use_paths("crate::a::{b, c::{d, e as f}, self}"),
            ["crate::a::b", "crate::a::c::d", "crate::a::c::e", "crate::a::self"]
        );
        assert_eq!(use_paths("super::x::*"), ["super::x::*"]);
    }

    #[test]
    fn a_path_inside_another_crates_path_is_not_this_crates() {
        let mods = tree(&[
            ("lib.rs", "pub mod sched; pub mod run;"),
            ("sched.rs", "pub const X: u32 = 1;"),
            ("run.rs", "use crate::sched;\nfn f() -> u32 { xen_abi::sched::SHUTDOWN_POWEROFF }"),
        ]);
        assert!(edges(&mods).is_empty(), "{:?}", edges(&mods));
    }

    #[test]
    fn comments_and_strings_hide_paths() {
        let s = strip("let a = \"crate::x::y\"; // crate::z\n/* crate::w */ crate::v::f(); let c = '\"'; 'a: loop {}");
        assert!(!s.contains("crate::x") && !s.contains("crate::z") && !s.contains("crate::w"));
        assert!(s.contains("crate::v::f") && s.contains("'a: loop"));
    }

    #[test]
    fn layers_pick_the_longest_prefix() {
        let l = Layers::parse(LAYERS).unwrap();
        assert_eq!(l.layer_of("event::table"), Some(1));
        assert_eq!(l.layer_of("event::ops"), Some(2));
        assert_eq!(l.layer_of("util::cpumask"), Some(0));
        assert_eq!(l.layer_of("sched"), None);
        assert!(Layers::parse("util\n").is_err());
        assert!(Layers::parse("[a]\nnot a path\n").is_err());
    }

    #[test]
    fn an_import_from_a_higher_layer_is_reported() {
        let mods = tree(&[
            ("lib.rs", "pub mod util; pub mod domain; pub mod event; pub mod boot;"),
            ("util/mod.rs", "pub mod cpumask;"),
            ("util/cpumask.rs", "pub struct CpuMask;"),
            (
                "domain/mod.rs",
                "use crate::util::cpumask::CpuMask;\npub struct Domain;\nfn f() { crate::event::ops::send(); }",
            ),
            ("event/mod.rs", "pub mod table; pub mod ops;"),
            ("event/table.rs", "use crate::domain::Domain;\npub struct Table;"),
            ("event/ops.rs", "use super::table::Table;\npub fn send() {}"),
            ("boot/mod.rs", "use crate::event::ops;\nuse crate::util::{self as u};\nfn f() { u::cpumask::CpuMask; }"),
        ]);
        let r = check(&mods, &Layers::parse(LAYERS).unwrap());
        let up: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
        assert!(up.iter().any(|p| p.contains("`domain` (mid) uses `send` from `event::ops` (high)")), "{up:?}");
        assert_eq!(r.problems.len(), 2, "the upward use and the circle it closes: {up:?}");
        assert!(matches!(&r.problems[1], Problem::Circle { modules } if modules.len() == 3));
        // Modules imported as modules are followed by what is used through them.
        let e = edges(&mods);
        assert!(e.contains(&("boot".into(), "util::cpumask".into(), "CpuMask".into())), "{e:?}");
        assert!(!e.iter().any(|(_, to, _)| to == "util"), "importing a module is no use of it: {e:?}");
    }

    #[test]
    fn an_exact_entry_places_only_that_module() {
        let l = Layers::parse("[low]\n=arch\narch::cpu\n[high]\narch::hvm\n").unwrap();
        assert_eq!(l.layer_of("arch"), Some(0));
        assert_eq!(l.layer_of("arch::cpu"), Some(0));
        assert_eq!(l.layer_of("arch::smp"), None);
    }

    #[test]
    fn a_module_in_no_layer_is_reported() {
        let mods = tree(&[("lib.rs", "pub mod sched;"), ("sched.rs", "pub fn f() {}")]);
        let r = check(&mods, &Layers::parse(LAYERS).unwrap());
        assert_eq!(r.problems, [Problem::Unplaced { module: "sched".into() }]);
    }

    #[test]
    fn re_exports_lead_to_the_defining_module_so_no_false_circle() {
        let l = Layers::parse("[all]\ndomain\n").unwrap();
        let mods = tree(&[
            ("domain/mod.rs", "mod state; pub mod vcpu; pub mod registry;\npub use state::*;\npub use vcpu::{Vcpu};"),
            ("domain/state.rs", "use super::Vcpu;\npub struct Domain { v: Vcpu }"),
            ("domain/vcpu.rs", "pub struct Vcpu;"),
            ("domain/registry.rs", "use super::Domain;\nfn find() -> Option<crate::domain::Domain> { None }"),
        ]);
        let r = check(&mods, &l);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let e = edges(&mods);
        assert!(e.contains(&("domain::registry".into(), "domain::state".into(), "Domain".into())), "{e:?}");
        assert!(e.contains(&("domain::state".into(), "domain::vcpu".into(), "Vcpu".into())), "{e:?}");
        assert!(!e.iter().any(|(from, _, _)| from == "domain"), "a folder's face uses nothing: {e:?}");
        // A real circle between two files is still one.
        let mods = tree(&[
            ("domain/mod.rs", "pub mod a; pub mod b;"),
            ("domain/a.rs", "pub fn f() { super::b::g() }"),
            ("domain/b.rs", "pub fn g() { super::a::f() }"),
        ]);
        let r = check(&mods, &l);
        assert_eq!(r.problems, [Problem::Circle { modules: vec!["domain::a".into(), "domain::b".into()] }]);
    }

    #[test]
    fn long_files_and_crowded_folders_are_reported_but_tests_do_not_count() {
        let long = "fn f() {}\n".repeat(MAX_LINES + 1);
        let tested = format!("fn f() {{}}\n#[cfg(test)]\nmod tests {{\n{}}}\n", "// x\n".repeat(2 * MAX_LINES));
        let mut files = vec![("lib.rs".to_string(), "pub mod a; pub mod b;".to_string())];
        files.push(("a.rs".into(), long));
        files.push(("b.rs".into(), tested));
        for i in 0..=MAX_FILES {
            files.push((format!("c/f{i}.rs"), String::new()));
        }
        let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let mods = tree(&refs);
        assert_eq!(mods.iter().find(|m| m.path == "b").unwrap().lines, 1);
        let r = check(&mods, &Layers::parse("[all]\na\nb\nc\n").unwrap());
        let p: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
        assert!(p.iter().any(|p| p.starts_with("a.rs has 901 lines")), "{p:?}");
        assert!(p.iter().any(|p| p.starts_with("c/ holds 16 files")), "{p:?}");
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn the_hypervisor_is_layered() {
        let r = check_hypervisor(&crate::paths::workspace_root()).unwrap();
        let problems: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
        assert!(r.modules > 50 && r.edges > 100, "the crate was not read: {} modules", r.modules);
        assert!(problems.is_empty(), "layering problems:\n{}", problems.join("\n"));
    }
}
