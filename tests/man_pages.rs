//! The man pages and shell completions the package ships, generated from what they
//! describe: kuryr(1) and one page per subcommand from the CLI definition (clap_mangen),
//! bash/zsh/fish completions from it too (clap_complete), and kuryr.conf(5) from the one
//! option table, each option with the prose and default etc/kuryr.conf.sample gives it.
//! The files are kept in contrib/ (the package takes them from there); a test fails when
//! one differs from what the generator makes now. `KURYR_BLESS=1 cargo test --test
//! man_pages` writes them anew.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use kuryr::commands::cli::Cli;
use roff::{bold, italic, roman, Roff};

fn contrib(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(rel)
}

/// Compares `made` with the kept file, or writes it under KURYR_BLESS.
fn check(path: &Path, made: &str, what: &str) -> Option<String> {
    if std::env::var_os("KURYR_BLESS").is_some() {
        std::fs::create_dir_all(path.parent()?).ok()?;
        std::fs::write(path, made).ok()?;
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(kept) if kept == made => None,
        Ok(_) => Some(format!(
            "{} differs from the {what} generated now",
            path.display()
        )),
        Err(e) => Some(format!("{}: {e}", path.display())),
    }
}

fn assert_all(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{}\n(regenerate: KURYR_BLESS=1 cargo test --test man_pages)",
        problems.join("\n")
    );
}

#[test]
fn man_pages_are_the_cli_definitions() {
    let dir = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(Cli::command(), dir.path()).unwrap();
    let mut problems = Vec::new();
    let mut made = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        // `kuryr help` is clap's own: no page of its own.
        if name.starts_with("kuryr-help") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        problems.extend(check(&contrib(&format!("man/{name}")), &text, "man page"));
        made.push(name);
    }
    made.sort();
    for sub in [
        "kuryr.1",
        "kuryr-serve.1",
        "kuryr-doctor.1",
        "kuryr-gc.1",
        "kuryr-inspect.1",
    ] {
        assert!(made.iter().any(|m| m == sub), "no {sub} among {made:?}");
    }
    // No kept page the CLI no longer has.
    for e in std::fs::read_dir(contrib("man")).into_iter().flatten() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".1") && !made.contains(&name) {
            problems.push(format!("contrib/man/{name}: the CLI has no such command"));
        }
    }
    assert_all(problems);
}

#[test]
fn completions_are_the_cli_definitions() {
    let mut problems = Vec::new();
    for (shell, file) in [
        (Shell::Bash, "kuryr.bash"),
        (Shell::Zsh, "_kuryr"),
        (Shell::Fish, "kuryr.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "kuryr", &mut buf);
        let text = String::from_utf8(buf).unwrap();
        for sub in ["serve", "doctor", "gc", "inspect", "config-file"] {
            assert!(text.contains(sub), "{file} does not complete {sub}");
        }
        problems.extend(check(
            &contrib(&format!("completions/{file}")),
            &text,
            "completion",
        ));
    }
    assert_all(problems);
}

/// One option as the sample documents it: its defaults (an option may be shown more
/// than once, e.g. auth_type) and the prose before it.
#[derive(Default)]
struct Documented {
    values: Vec<String>,
    prose: Vec<String>,
}

/// The sample's `#name = value` lines, each with the comment paragraph above it (a run
/// of options shares the paragraph before the run).
fn sample_docs() -> (Vec<String>, BTreeMap<(String, String), Documented>) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/kuryr.conf.sample"
    ))
    .unwrap();
    let mut header = Vec::new();
    let mut docs: BTreeMap<(String, String), Documented> = BTreeMap::new();
    let (mut section, mut prose, mut run_prose) = (None::<String>, Vec::new(), Vec::new());
    for line in text.lines() {
        let l = line.trim();
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(s.to_string());
            prose.clear();
            continue;
        }
        let option = l
            .strip_prefix('#')
            .and_then(|r| r.split_once(" ="))
            .filter(|(n, _)| !n.is_empty() && !n.contains(' '));
        if let (Some((name, value)), Some(sec)) = (option, &section) {
            if !prose.is_empty() {
                run_prose = std::mem::take(&mut prose);
            }
            let d = docs.entry((sec.clone(), name.to_string())).or_default();
            d.values.push(value.trim().to_string());
            for p in &run_prose {
                if !d.prose.contains(p) {
                    d.prose.push(p.clone());
                }
            }
        } else if let Some(c) = l.strip_prefix('#') {
            if section.is_none() {
                header.push(c.trim().to_string());
            } else {
                prose.push(c.trim().to_string());
            }
        } else if l.is_empty() {
            prose.clear();
            run_prose.clear();
        }
    }
    (header, docs)
}

/// kuryr.conf(5): the sections and options of the option table, in its order.
fn conf_page() -> Result<String, Vec<String>> {
    let (header, docs) = sample_docs();
    let mut page = Roff::new();
    page.control("TH", ["KURYR.CONF", "5", "", "kuryr", "File Formats"]);
    page.control("SH", ["NAME"]);
    page.text([roman("kuryr.conf - configuration of kuryr")]);
    page.control("SH", ["DESCRIPTION"]);
    page.text([roman(header.join(" "))]);
    page.control("PP", []);
    page.text([
        roman("The file is read by "),
        bold("kuryr"),
        roman("(1) from /etc/kuryr/kuryr.conf unless "),
        bold("--config-file"),
        roman(" names another. Unknown options are warned about, not refused."),
    ]);
    let mut problems = Vec::new();
    let mut current = "";
    for o in kuryr::config::option_table() {
        if o.section != current {
            current = o.section;
            page.control("SH", [format!("[{current}]").as_str()]);
        }
        let (name, aliases) = (o.names[0], &o.names[1..]);
        let doc = docs.get(&(o.section.to_string(), name.to_string()));
        let mut head = vec![bold(name)];
        if let Some(d) = doc {
            let shown: Vec<&str> = d
                .values
                .iter()
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .collect();
            if !shown.is_empty() {
                head.push(roman(" = "));
                head.push(italic(shown.join(" | ")));
            }
        }
        page.control("TP", []);
        page.text(head);
        let mut body = match doc {
            Some(d) if !d.prose.is_empty() => d.prose.join(" "),
            Some(_) => String::new(),
            None if !o.has_effect => {
                "Accepted for compatibility with kuryr-libnetwork; no effect here.".to_string()
            }
            None => {
                problems.push(format!(
                    "[{}] {name} has an effect but etc/kuryr.conf.sample does not document it",
                    o.section
                ));
                continue;
            }
        };
        if !aliases.is_empty() {
            body.push_str(&format!(" Also read as: {}.", aliases.join(", ")));
        }
        if !body.is_empty() {
            page.text([roman(body)]);
        }
    }
    page.control("SH", ["SEE ALSO"]);
    page.text([
        bold("kuryr"),
        roman("(1), "),
        bold("kuryr-serve"),
        roman("(1)"),
    ]);
    if problems.is_empty() {
        Ok(page.render())
    } else {
        Err(problems)
    }
}

#[test]
fn kuryr_conf_5_is_the_option_table_with_the_samples_prose() {
    let page = conf_page().unwrap_or_else(|p| panic!("{}", p.join("\n")));
    for o in kuryr::config::option_table() {
        assert!(page.contains(o.names[0]), "{} missing", o.names[0]);
    }
    assert_all(
        check(&contrib("man/kuryr.conf.5"), &page, "page")
            .into_iter()
            .collect(),
    );
}
