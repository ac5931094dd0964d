//! Where the secrets engine spends its time on a tree: the keyword pass, and each rule's regex
//! over the files its keywords trigger it on. A development aid for rule authors.
//!
//!   cargo run --release -p scanstream-scanner --example rule_costs -- TREE [TOP]

use std::time::{Duration, Instant};

use scanstream_scanner::rules::RulePack;

fn files(root: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
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

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().expect("usage: rule_costs TREE [TOP]");
    let top: usize = args
        .next()
        .map_or(25, |t| t.parse().expect("TOP is a number"));
    let pack = RulePack::builtin().expect("built-in pack");
    let mut paths = Vec::new();
    files(std::path::Path::new(&root), &mut paths);
    let (mut keyword_time, mut bytes) = (Duration::ZERO, 0usize);
    let mut rule_time = vec![Duration::ZERO; pack.rules.len()];
    let mut rule_bytes = vec![0usize; pack.rules.len()];
    let mut rule_files = vec![0usize; pack.rules.len()];
    let mut keyword_hits = vec![0usize; pack.keyword_rules.len()];
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
        for m in pack.keywords.find_overlapping_iter(&content) {
            keyword_hits[m.pattern().as_usize()] += 1;
            for &rule in &pack.keyword_rules[m.pattern().as_usize()] {
                triggered[rule] = true;
            }
        }
        keyword_time += started.elapsed();
        for (index, rule) in pack.rules.iter().enumerate() {
            let (true, Some(regex)) = (triggered[index], &rule.regex) else {
                continue;
            };
            let started = Instant::now();
            let mut at = 0;
            let mut caps = regex.create_captures();
            loop {
                regex.search_captures(
                    &regex_automata::Input::new(&content).span(at..content.len()),
                    &mut caps,
                );
                let Some(whole) = caps.get_match() else { break };
                at = whole.end().max(whole.start() + 1);
                if at > content.len() {
                    break;
                }
            }
            rule_time[index] += started.elapsed();
            rule_bytes[index] += content.len();
            rule_files[index] += 1;
        }
    }
    let total: Duration = rule_time.iter().sum();
    println!(
        "{} files, {:.1} MB; keyword pass {:.3} s; regexes {:.3} s",
        paths.len(),
        bytes as f64 / 1e6,
        keyword_time.as_secs_f64(),
        total.as_secs_f64()
    );
    let mut order: Vec<usize> = (0..pack.rules.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(rule_time[*i]));
    println!("{:>8} {:>7} {:>9}  rule", "seconds", "files", "MB");
    for i in order.into_iter().take(top) {
        println!(
            "{:>8.3} {:>7} {:>9.1}  {} {:?}",
            rule_time[i].as_secs_f64(),
            rule_files[i],
            rule_bytes[i] as f64 / 1e6,
            pack.rules[i].id,
            pack.rules[i].reach,
        );
    }
    let mut hits: Vec<usize> = (0..keyword_hits.len()).collect();
    hits.sort_by_key(|i| std::cmp::Reverse(keyword_hits[*i]));
    let rules: Vec<String> = hits
        .iter()
        .take(top)
        .map(|i| {
            let ids: Vec<&str> = pack.keyword_rules[*i]
                .iter()
                .map(|r| pack.rules[*r].id.as_str())
                .collect();
            format!("{:>9}  {}", keyword_hits[*i], ids.join(","))
        })
        .collect();
    println!("keyword hits (triggered rules):\n{}", rules.join("\n"));
}
