//! The docs name only what kuryr has. For README.md and every docs/*.md page:
//!
//! - every relative link (`[x](path)`, `[x](path#anchor)`, `[x]: path`) reaches a file, and
//!   an anchor a heading of the target (GitHub's slugs);
//! - every kuryr.conf option the page names is one kuryr knows in that section: the
//!   `name = value` lines (commented or not) of ```ini blocks, backticked
//!   `[section] option` mentions, and the option tables under a `[section]` heading (the
//!   configuration reference), checked against `kuryr::config::known_options`, the same
//!   table the parser reads;
//! - every `kuryr <word>` run as a command (in code blocks and backticks) and every
//!   `kuryr-<word>(1)` man page names a subcommand the binary lists in its `--help`;
//! - every `kuryr_...` metric name is one the metrics module registers (its rendering);
//! - each page has one `#` title.
//!
//! Files only: no network, no service. Each failure names the file, the line and the name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One page: its path from the repository root and its text.
struct Page {
    rel: String,
    text: String,
}

fn pages() -> Vec<Page> {
    let mut rels = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    rels.extend(docs);
    rels.into_iter()
        .map(|rel| Page {
            text: std::fs::read_to_string(root().join(&rel)).unwrap(),
            rel,
        })
        .collect()
}

/// A page cut into what the checks read.
#[derive(Default)]
struct Parsed {
    /// Fenced code blocks: info string (first word, lower case), first line number, lines.
    blocks: Vec<(String, usize, Vec<String>)>,
    /// Prose paragraphs (outside code blocks, split at blank lines): first line, text.
    paragraphs: Vec<(usize, String)>,
    /// Headings: line, level, text.
    headings: Vec<(usize, usize, String)>,
    /// Table rows outside code blocks: line, the heading they sit under.
    rows: Vec<(usize, String, String)>,
}

fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut fence: Option<(String, String, usize, Vec<String>)> = None;
    let mut para: Option<(usize, String)> = None;
    let mut heading = String::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim_start();
        if let Some((marker, info, start, mut lines)) = fence.take() {
            if t.starts_with(marker.as_str())
                && t.trim_start_matches(marker.as_str()).trim().is_empty()
            {
                p.blocks.push((info, start, lines));
            } else {
                lines.push(line.to_string());
                fence = Some((marker, info, start, lines));
            }
            continue;
        }
        if t.starts_with("```") || t.starts_with("~~~") {
            p.paragraphs.extend(para.take());
            let marker: String = t.chars().take_while(|c| *c == '`' || *c == '~').collect();
            let info = t[marker.len()..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            fence = Some((marker, info, n + 1, Vec::new()));
            continue;
        }
        if t.is_empty() {
            p.paragraphs.extend(para.take());
            continue;
        }
        if let Some(rest) = heading_of(t) {
            p.paragraphs.extend(para.take());
            p.headings.push((n, rest.0, rest.1.clone()));
            heading = rest.1;
            // A heading is prose too (backticks, links).
            p.paragraphs.push((n, t.to_string()));
            continue;
        }
        if t.starts_with('|') {
            p.rows.push((n, heading.clone(), t.to_string()));
        }
        match &mut para {
            Some((_, s)) => {
                s.push('\n');
                s.push_str(line);
            }
            None => para = Some((n, line.to_string())),
        }
    }
    p.paragraphs.extend(para);
    if let Some((_, info, start, lines)) = fence {
        p.blocks.push((info, start, lines));
    }
    p
}

/// `## Text` -> (2, "Text").
fn heading_of(line: &str) -> Option<(usize, String)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) || !line[level..].starts_with(' ') {
        return None;
    }
    Some((
        level,
        line[level..]
            .trim()
            .trim_end_matches('#')
            .trim()
            .to_string(),
    ))
}

/// Where the inline code spans of a text are: (start of the opening backticks, start of
/// the content, end of the content, end of the closing backticks).
fn span_ranges(text: &str) -> Vec<(usize, usize, usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let run = b[i..].iter().take_while(|c| **c == b'`').count();
        let open = i + run;
        // The closing run of the same length.
        let mut j = open;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let r = b[j..].iter().take_while(|c| **c == b'`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        let Some(c) = close else {
            i = open;
            continue;
        };
        out.push((i, open, c, c + run));
        i = c + run;
    }
    out
}

/// The inline code spans of a paragraph, newlines as spaces: (line, span).
fn code_spans(start: usize, text: &str) -> Vec<(usize, String)> {
    span_ranges(text)
        .into_iter()
        .map(|(at, open, close, _)| {
            let line = start + text[..at].matches('\n').count();
            (
                line,
                text[open..close].replace('\n', " ").trim().to_string(),
            )
        })
        .collect()
}

/// The paragraph with its code spans blanked out, newlines kept (links inside code are
/// not links).
fn without_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _, _, end) in span_ranges(text) {
        out.push_str(&text[last..at]);
        out.extend(
            text[at..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// GitHub's anchor of a heading: lower case, spaces to '-', punctuation but '-' and '_'
/// dropped (link syntax read as its text).
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` -> text
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|m| open + m) else {
            break;
        };
        let Some(end) = rest[mid..].find(')').map(|e| mid + e) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..mid]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings, duplicates numbered as GitHub numbers them.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, _, h) in parse(text).headings {
        let s = slug(&h);
        let mut candidate = s.clone();
        let mut k = 1;
        while out.contains(&candidate) {
            candidate = format!("{s}-{k}");
            k += 1;
        }
        out.insert(candidate);
    }
    out
}

/// The link targets of a paragraph: `[x](target "title")`, `![x](target)`, `[x]: target`.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = text[from..].find("](").map(|k| from + k) {
        let start = k + 2;
        let end = text[start..]
            .find(|c: char| c == ')' || c.is_whitespace())
            .map_or(text.len(), |e| start + e);
        out.push((
            text[..k].matches('\n').count(),
            text[start..end].to_string(),
        ));
        from = end;
    }
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('[').and_then(|r| r.split_once("]: ")) {
            if !rest.0.is_empty() && !rest.0.contains(']') {
                let target = rest.1.split_whitespace().next().unwrap_or("").to_string();
                out.push((i, target));
            }
        }
    }
    out
}

#[test]
fn relative_links_reach_a_file_and_a_heading() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let dir = Path::new(&page.rel).parent().unwrap_or(Path::new(""));
        for (start, text) in parse(&page.text).paragraphs {
            for (off, target) in link_targets(&without_code(&text)) {
                let line = start + off;
                let target = target.trim_start_matches('<').trim_end_matches('>');
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target, None),
                };
                let file = if path.is_empty() {
                    root().join(&page.rel)
                } else if let Some(abs) = path.strip_prefix('/') {
                    root().join(abs)
                } else {
                    root().join(dir).join(path)
                };
                if !file.exists() {
                    bad.push(format!(
                        "{}:{line}: link to {target}: {} does not exist",
                        page.rel,
                        file.strip_prefix(root()).unwrap_or(&file).display()
                    ));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if file.extension().is_none_or(|e| e != "md") {
                    continue;
                }
                let known = anchors(&std::fs::read_to_string(&file).unwrap());
                if !known.contains(anchor) {
                    bad.push(format!(
                        "{}:{line}: link to {target}: no heading with anchor #{anchor} there",
                        page.rel
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
    assert!(
        checked > 50,
        "only {checked} relative links found: is the parser blind?"
    );
}

#[test]
fn each_page_has_one_title() {
    let mut bad = Vec::new();
    for page in pages() {
        let titles: Vec<usize> = parse(&page.text)
            .headings
            .iter()
            .filter(|h| h.1 == 1)
            .map(|h| h.0)
            .collect();
        if titles.len() != 1 {
            bad.push(format!(
                "{}: {} `#` titles (lines {titles:?}), want one",
                page.rel,
                titles.len()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// `[word] ...` in backticks that is no kuryr.conf section: containers.conf's sections,
/// and `kuryr doctor`'s marks (`[FAIL] configuration parses`).
const FOREIGN_SECTIONS: &[&str] = &["network", "containers", "FAIL", "warn"];

fn is_kuryr_section(section: &str) -> bool {
    !kuryr::config::known_options(section).is_empty()
}

/// kuryr's parser reads `-` in an option name as `_`.
fn known(section: &str, name: &str) -> bool {
    kuryr::config::known_options(section).contains(&name.replace('-', "_").as_str())
}

fn is_option_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase() || f == '_')
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `[section] rest` -> (section, rest).
fn section_prefix(s: &str) -> Option<(&str, &str)> {
    let (sec, rest) = s.strip_prefix('[')?.split_once(']')?;
    (!sec.is_empty() && sec.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some((sec, rest))
}

#[test]
fn pages_name_only_options_kuryr_knows() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let parsed = parse(&page.text);
        // ```ini blocks: kuryr.conf snippets.
        for (_, start, lines) in parsed.blocks.iter().filter(|b| b.0 == "ini") {
            let mut section = "DEFAULT".to_string();
            for (k, line) in lines.iter().enumerate() {
                let n = start + k;
                let l = line.trim();
                if let Some((sec, rest)) = section_prefix(l) {
                    if rest.trim().is_empty() {
                        section = sec.to_string();
                        if !is_kuryr_section(sec) {
                            bad.push(format!(
                                "{}:{n}: [{sec}] is no section of kuryr.conf",
                                page.rel
                            ));
                        }
                        continue;
                    }
                }
                let commented = l.starts_with('#');
                let Some((name, _)) = l.trim_start_matches('#').split_once('=') else {
                    continue;
                };
                let name = name.trim();
                // A commented line is an option only when it reads like one.
                if !is_option_name(name) {
                    if !commented {
                        bad.push(format!("{}:{n}: {l:?} is not `name = value`", page.rel));
                    }
                    continue;
                }
                checked += 1;
                if !known(&section, name) {
                    bad.push(format!(
                        "{}:{n}: [{section}] {name}: kuryr has no such option",
                        page.rel
                    ));
                }
            }
        }
        // Backticked `[section] option` (or `[section] option = value`) in prose.
        for (start, text) in &parsed.paragraphs {
            for (n, span) in code_spans(*start, text) {
                let Some((sec, rest)) = section_prefix(&span) else {
                    continue;
                };
                let Some(name) = rest
                    .split(|c: char| c.is_whitespace() || c == '=')
                    .find(|w| !w.is_empty())
                else {
                    continue;
                };
                if !is_option_name(name) {
                    continue;
                }
                if FOREIGN_SECTIONS.contains(&sec) && !is_kuryr_section(sec) {
                    continue;
                }
                checked += 1;
                if !is_kuryr_section(sec) {
                    bad.push(format!(
                        "{}:{n}: `{span}`: [{sec}] is no section of kuryr.conf",
                        page.rel
                    ));
                } else if !known(sec, name) {
                    bad.push(format!(
                        "{}:{n}: `{span}`: kuryr has no option [{sec}] {name}",
                        page.rel
                    ));
                }
            }
        }
        // Option tables under a `[section]` heading: each backticked name of the first cell.
        for (n, heading, row) in &parsed.rows {
            let Some((sec, _)) = section_prefix(heading.trim_matches('`')) else {
                continue;
            };
            let first = row.trim_start_matches('|').split('|').next().unwrap_or("");
            for (_, name) in code_spans(*n, first) {
                if !is_option_name(&name) {
                    continue;
                }
                checked += 1;
                if !known(sec, &name) {
                    bad.push(format!(
                        "{}:{n}: option table of [{sec}] names {name}: kuryr has no such option",
                        page.rel
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "options kuryr does not have:\n{}",
        bad.join("\n")
    );
    assert!(
        checked > 60,
        "only {checked} option mentions found: is the parser blind?"
    );
}

/// The subcommands the binary lists under `Commands:` in its `--help`.
fn subcommands() -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "kuryr --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let cmds: BTreeSet<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(cmds.contains("serve"), "no subcommands read from:\n{help}");
    cmds
}

/// Words that put the next word in a command's place.
const COMMAND_STARTS: &[&str] = &[
    "$", "sudo", "&&", "||", ";", "|", "exec", "then", "do", "time", "(",
];

/// Words no command line of kuryr holds, but its messages do: a span or line with one of
/// them after `kuryr` is a quoted message (`kuryr is not connected to Neutron yet`), not
/// a command.
const PROSE_WORDS: &[&str] = &[
    "is", "are", "not", "did", "does", "do", "to", "the", "a", "an", "at", "but", "of", "for",
    "no", "without",
];

/// The words run as `kuryr <word>` on a line of a shell command.
fn kuryr_commands(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if w.starts_with('#') {
            break; // a shell comment
        }
        let program = w.rsplit('=').next().unwrap_or(w);
        let program = program.rsplit('/').next().unwrap_or(program);
        let at_start =
            i == 0 || COMMAND_STARTS.contains(&words[i - 1]) || words[i - 1].ends_with(';');
        if program != "kuryr" || !at_start {
            continue;
        }
        let Some(next) = words.get(i + 1) else {
            continue;
        };
        let mut rest = words[i + 1..].iter().take_while(|w| !w.starts_with('#'));
        if rest.any(|w| PROSE_WORDS.contains(w)) {
            continue;
        }
        let next = next.trim_end_matches([';', ')', ',', '.']);
        if next.starts_with('-') || next.is_empty() {
            continue;
        }
        if next
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push(next.to_string());
        }
    }
    out
}

/// `kuryr-<word>(1)`: the man page of a subcommand.
fn man_pages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = text[from..].find("kuryr-").map(|k| from + k) {
        let word: String = text[k + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if text[k + 6 + word.len()..].starts_with("(1)") && !word.is_empty() {
            out.push(word.clone());
        }
        from = k + 6 + word.len();
    }
    out
}

#[test]
fn pages_name_only_subcommands_kuryr_has() {
    let known = subcommands();
    let mut bad = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let parsed = parse(&page.text);
        let mut lines: Vec<(usize, String)> = Vec::new();
        for (info, start, block) in &parsed.blocks {
            if matches!(info.as_str(), "ini" | "json" | "toml" | "yaml") {
                continue;
            }
            lines.extend(
                block
                    .iter()
                    .enumerate()
                    .map(|(k, l)| (start + k, l.clone())),
            );
        }
        for (start, text) in &parsed.paragraphs {
            lines.extend(code_spans(*start, text));
            for word in man_pages(text) {
                checked += 1;
                if !known.contains(&word) {
                    bad.push(format!(
                        "{}:{start}: man page kuryr-{word}(1): kuryr has no subcommand {word:?} (it has: {known:?})",
                        page.rel
                    ));
                }
            }
        }
        for (n, line) in lines {
            for word in kuryr_commands(&line) {
                checked += 1;
                if !known.contains(&word) {
                    bad.push(format!(
                        "{}:{n}: `kuryr {word}`: kuryr has no subcommand {word:?} (it has: {known:?})",
                        page.rel
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "subcommands kuryr does not have:\n{}",
        bad.join("\n")
    );
    assert!(
        checked > 20,
        "only {checked} kuryr commands found: is the parser blind?"
    );
}

/// Metric names as the metrics module renders them: families and samples.
fn metric_names() -> BTreeSet<String> {
    let m = kuryr::metrics::Metrics::new();
    m.observe_call("NetworkDriver.Join", 200, 0.01);
    m.observe_neutron("GET", "ports", 200, 0.01);
    let text = m.render();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        names.extend(name.filter(|n| !n.is_empty()).map(str::to_string));
    }
    assert!(names.len() >= 4, "no metrics read from:\n{text}");
    // A family may be named without its samples' suffix (`kuryr_neutron_requests`).
    let families: Vec<String> = names.iter().map(|n| family(n).to_string()).collect();
    names.extend(families);
    names
}

/// The family of a sample name: Prometheus' suffixes stripped.
fn family(name: &str) -> &str {
    for suffix in ["_total", "_bucket", "_sum", "_count", "_created"] {
        if let Some(f) = name.strip_suffix(suffix) {
            return f;
        }
    }
    name
}

/// `kuryr_...` names that are no metric: options (`kuryr_uri`) and the names of the
/// functions of src/ and tests/ (test names the docs cite).
fn other_kuryr_names() -> BTreeSet<String> {
    let mut out: BTreeSet<String> = ["DEFAULT", "neutron", "binding", "sriov"]
        .iter()
        .flat_map(|s| kuryr::config::known_options(s))
        .filter(|o| o.starts_with("kuryr_"))
        .map(str::to_string)
        .collect();
    let mut dirs = vec![root().join("src"), root().join("tests")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (k, _) in text.match_indices("fn kuryr_") {
                    let name: String = text[k + 3..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// `kuryr_[a-z_]+` tokens of a text with their line; a dotted Python path
/// (`kuryr_libnetwork.port_driver...`) is none.
fn kuryr_tokens(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(k) = text[from..].find("kuryr_").map(|k| from + k) {
        let end = k + text[k..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(text.len() - k);
        from = end;
        let glued = k > 0 && (b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'_');
        let dotted =
            b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_alphabetic);
        let digits = b.get(end).is_some_and(u8::is_ascii_digit);
        if glued || dotted || digits {
            continue;
        }
        out.push((
            text[..k].matches('\n').count() + 1,
            text[k..end].to_string(),
        ));
    }
    out
}

#[test]
fn pages_name_only_metrics_kuryr_exports() {
    let metrics = metric_names();
    let other = other_kuryr_names();
    let mut bad = Vec::new();
    let mut checked = 0;
    for page in pages() {
        for (n, token) in kuryr_tokens(&page.text) {
            if other.contains(&token) {
                continue;
            }
            checked += 1;
            if !metrics.contains(&token) && !metrics.contains(family(&token)) {
                bad.push(format!(
                    "{}:{n}: {token}: kuryr exports no such metric (it has: {metrics:?})",
                    page.rel
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "metrics kuryr does not export:\n{}",
        bad.join("\n")
    );
    assert!(
        checked >= 4,
        "only {checked} metric names found: does the operations page list them?"
    );
}

#[test]
fn the_parsers_see_what_they_check() {
    assert_eq!(slug("Podman 5 and 6 (netavark)"), "podman-5-and-6-netavark");
    assert_eq!(slug("`[DEFAULT]`"), "default");
    assert_eq!(
        slug("How Docker maps onto Neutron"),
        "how-docker-maps-onto-neutron"
    );
    assert_eq!(
        slug("Neutron backends: ML2/OVN and ML2/linuxbridge"),
        "neutron-backends-ml2ovn-and-ml2linuxbridge"
    );
    assert_eq!(
        code_spans(3, "a `kuryr gc\n--apply` and ``x ` y``"),
        vec![
            (3, "kuryr gc --apply".to_string()),
            (4, "x ` y".to_string())
        ]
    );
    assert_eq!(kuryr_commands("$ kuryr inspect web"), vec!["inspect"]);
    assert_eq!(
        kuryr_commands("ExecStart=/usr/bin/kuryr serve --config-file x"),
        vec!["serve"]
    );
    assert!(kuryr_commands("docker network create -d kuryr mynet").is_empty());
    assert!(kuryr_commands("install -m 755 x /usr/libexec/netavark/kuryr").is_empty());
    assert!(kuryr_commands("# kuryr frobnicate, in a comment").is_empty());
    assert!(kuryr_commands("kuryr daemon not reachable at /run/kuryr/cni.sock").is_empty());
    assert_eq!(kuryr_commands("kuryr frobnicate --now"), vec!["frobnicate"]);
    assert_eq!(
        man_pages("kuryr(1), kuryr-gc(1), kuryr.conf(5)"),
        vec!["gc"]
    );
    assert_eq!(
        family("kuryr_neutron_requests_total"),
        "kuryr_neutron_requests"
    );
    assert_eq!(
        kuryr_tokens("`kuryr_uri` and kuryr_libnetwork.port_driver.drivers.vlan\nkuryr_x_total"),
        vec![
            (1, "kuryr_uri".to_string()),
            (2, "kuryr_x_total".to_string())
        ]
    );
    let links = link_targets("see [a](docs/a.md#b) and\n[c](../x \"t\")\n[d]: e.md");
    assert_eq!(
        links,
        vec![
            (0, "docs/a.md#b".to_string()),
            (1, "../x".to_string()),
            (2, "e.md".to_string())
        ]
    );
}
