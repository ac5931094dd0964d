//! Where the secrets engine spends its time on a tree: the keyword pass, and each rule's regex
//! searched over the whole of every file its keywords occur in (the cost a rule would have
//! without the search near its keywords; the reach column says whether it has one). A
//! development aid for rule authors: a rule near the top with no reach is worth a look.
//!
//!   cargo run --release -p scanstream-scanner --example rule_costs -- TREE [TOP]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use regex_automata::Input;
use scanstream_scanner::rules::RulePack;

fn files(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(root), top) = (args.next(), args.next()) else {
        eprintln!("usage: rule_costs TREE [TOP]");
        return ExitCode::from(2);
    };
    let Ok(top) = top.map_or(Ok(25), |t| t.parse::<usize>()) else {
        eprintln!("rule_costs: TOP is a number of rules");
        return ExitCode::from(2);
    };
    let pack = match RulePack::builtin() {
        Ok(pack) => pack,
        Err(e) => {
            eprintln!("rule_costs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut paths = Vec::new();
    files(Path::new(&root), &mut paths);
    let (mut keyword_time, mut bytes) = (Duration::ZERO, 0usize);
    let mut rule_time = vec![Duration::ZERO; pack.rules.len()];
    let mut rule_files = vec![0usize; pack.rules.len()];
    let mut searcher = pack.keywords.searcher();
    for path in &paths {
        let Ok(content) = std::fs::read(path) else {
            continue;
        };
        if content.contains(&0) {
            continue;
        }
        bytes += content.len();
        let started = Instant::now();
        let mut triggered = vec![false; pack.rules.len()];
        let searched = searcher.find(&content, |keyword, _, _| {
            for &rule in &pack.keyword_rules[keyword] {
                triggered[rule] = true;
            }
        });
        if let Err(e) = searched {
            eprintln!("rule_costs: keyword prefilter: {e}");
            return ExitCode::FAILURE;
        }
        keyword_time += started.elapsed();
        for (index, rule) in pack.rules.iter().enumerate() {
            // Built before the clock starts: a built-in regex is built when first used.
            let (true, Some(regex)) = (triggered[index], rule.regex.as_ref().and_then(|r| r.get()))
            else {
                continue;
            };
            let started = Instant::now();
            let mut caps = regex.create_captures();
            let mut at = 0;
            while at <= content.len() {
                regex.search_captures(&Input::new(&content).span(at..content.len()), &mut caps);
                let Some(whole) = caps.get_match() else {
                    break;
                };
                at = whole.end().max(whole.start() + 1);
            }
            rule_time[index] += started.elapsed();
            rule_files[index] += 1;
        }
    }
    println!(
        "{} files, {:.1} MB; keyword pass {:.3} s; regexes over whole files {:.3} s",
        paths.len(),
        bytes as f64 / 1e6,
        keyword_time.as_secs_f64(),
        rule_time.iter().sum::<Duration>().as_secs_f64()
    );
    let mut order: Vec<usize> = (0..pack.rules.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(rule_time[*i]));
    println!("{:>8} {:>7}  {:<40} reach", "seconds", "files", "rule");
    for i in order.into_iter().take(top) {
        let reach = match pack.rules[i].reach {
            None => "whole file".to_owned(),
            Some(r) => match (r.one_line, r.bytes) {
                (true, Some(b)) => format!("its line, {b} bytes"),
                (true, None) => "its line".to_owned(),
                (false, Some(b)) => format!("{b} bytes"),
                (false, None) => "whole file".to_owned(),
            },
        };
        println!(
            "{:>8.3} {:>7}  {:<40} {reach}",
            rule_time[i].as_secs_f64(),
            rule_files[i],
            pack.rules[i].id,
        );
    }
    ExitCode::SUCCESS
}
