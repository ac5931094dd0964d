//! The inventory: items filtered from the index (only the shown page is read from the store),
//! an item's page with its places, triage trail and triage dialog, and the repositories.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use scanstream_contracts::inventory::{InventoryItem, ItemId, ItemStatus};
use serde::Deserialize;

use super::page::{self, ago, badge, empty_row, item_status, job_status, time};
use super::session::Viewer;
use crate::api::AppState;
use crate::index::ItemSummary;
use crate::store::Table;

const PAGE: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    severity: Option<String>,
    repo: Option<String>,
    in_tip: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let status = query.status.clone().unwrap_or_else(|| "open".to_owned());
    let wanted_severity = query.severity.clone().unwrap_or_default();
    let repo = query.repo.clone().unwrap_or_default();
    let in_tip = query.in_tip.clone().unwrap_or_default();
    let repos = state.index.repos();
    let repo_keys: Option<Vec<u64>> = (!repo.trim().is_empty()).then(|| {
        let needle = repo.trim().to_lowercase();
        repos
            .iter()
            .filter(|(_, url)| url.to_lowercase().contains(&needle))
            .map(|(k, _)| *k)
            .collect()
    });
    let (keys, total) = state.index.with(|_, items| {
        let mut hits: Vec<(&u128, &ItemSummary)> = items
            .iter()
            .filter(|(_, i)| status.is_empty() || item_status(i.status) == status)
            .filter(|(_, i)| wanted_severity.is_empty() || i.severity.name() == wanted_severity)
            .filter(|(_, i)| repo_keys.as_ref().is_none_or(|k| k.contains(&i.repo)))
            .filter(|(_, i)| match in_tip.as_str() {
                "true" => i.in_tip,
                "false" => !i.in_tip,
                _ => true,
            })
            .collect();
        let total = hits.len();
        hits.sort_unstable_by(|a, b| {
            a.1.severity
                .rank()
                .cmp(&b.1.severity.rank())
                .then(b.1.first_seen.cmp(&a.1.first_seen))
                .then(a.0.cmp(b.0))
        });
        (
            hits.into_iter()
                .take(PAGE)
                .map(|(k, _)| *k)
                .collect::<Vec<u128>>(),
            total,
        )
    });
    let items = read_items(&state, keys).await;
    let now = scanstream_platform::now_ms();
    let body = html! {
        form.filters method="get" action="/ui/findings" role="search" {
            label { "Status "
                select name="status" {
                    option value="" selected[status.is_empty()] { "any" }
                    @for s in ["open", "resolved", "ignored"] { option value=(s) selected[status == s] { (s) } }
                }
            }
            label { "Severity "
                select name="severity" {
                    option value="" selected[wanted_severity.is_empty()] { "any" }
                    @for s in ["critical", "high", "medium", "low", "info"] { option value=(s) selected[wanted_severity == s] { (s) } }
                }
            }
            label { "Repository " input type="search" name="repo" value=(repo); }
            label { "In the tip "
                select name="in_tip" {
                    option value="" selected[in_tip.is_empty()] { "either" }
                    option value="true" selected[in_tip == "true"] { "yes" }
                    option value="false" selected[in_tip == "false"] { "history only" }
                }
            }
            button type="submit" { "Filter" }
        }
        p.meta { (total) " items" @if total > PAGE { ", the first " (PAGE) " shown" } "." }
        div.scroll {
            table {
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Severity" } th scope="col" { "Status" } th scope="col" { "Preview" } th scope="col" { "Repository" } th scope="col" { "Where" } th scope="col" { "First seen" } } }
                tbody {
                    @if items.is_empty() { (empty_row(7, "No items match.")) }
                    @for item in &items {
                        tr {
                            th scope="row" { a href={"/ui/findings/" (item.item_id.0)} { (item.rule_id) } }
                            td { (badge(item.severity.name())) }
                            td { (badge(item_status(item.status))) }
                            td { code { (item.redacted_preview) } }
                            td.repo { (item.repo_url) }
                            td { @if let Some(l) = item.locations.first() { code { (l.path) ":" (l.line) } } @if !item.in_tip { " " span.tag { "history only" } } }
                            td { (ago(item.first_seen, now)) " ago" }
                        }
                    }
                }
            }
        }
    };
    page::page(&viewer, "Findings", "/ui/findings", body)
}

async fn read_items(state: &AppState, keys: Vec<u128>) -> Vec<InventoryItem> {
    let Ok(values) = state
        .store
        .blocking(move |s| s.get_many(Table::Items, &keys))
        .await
    else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(values.len());
    for value in values.into_iter().flatten() {
        if let Ok(item) = state.codec.decode::<InventoryItem>(&value.value).await {
            out.push(item);
        }
    }
    out
}

pub async fn show(
    state: web::Data<AppState>,
    viewer: Viewer,
    path: web::Path<String>,
) -> HttpResponse {
    let item = match ItemId::parse(&path) {
        Some(id) => read_items(&state, vec![id.0.as_u128()]).await.pop(),
        None => None,
    };
    let Some(item) = item else {
        return page::refusal(
            actix_web::http::StatusCode::NOT_FOUND,
            &viewer,
            "No such item",
            "/ui/findings",
            "No inventory item has this id.",
        );
    };
    let title = format!("{} in {}", item.rule_id, item.repo_url);
    page::page(&viewer, &title, "/ui/findings", detail(&viewer, &item))
}

fn detail(viewer: &Viewer, item: &InventoryItem) -> Markup {
    let id = item.item_id.0;
    html! {
        dl.facts {
            dt { "Status" } dd #item-status { (badge(item_status(item.status))) @if let Some(r) = item.reason { " (" (reason(r)) ")" } }
            dt { "Severity" } dd { (badge(item.severity.name())) }
            dt { "Rule" } dd { (item.rule_id) " · engines " (item.engines.join(", ")) }
            dt { "Preview" } dd { code { (item.redacted_preview) } " (redacted; the secret itself never leaves the scanner)" }
            dt { "Repository" } dd { (item.repo_url) }
            dt { "In the tip" } dd { @if item.in_tip { "yes" } @else { "no: only in history" } }
            dt { "First seen" } dd { (time(item.first_seen)) " by " a href={"/ui/jobs/" (item.first_job.0)} { "this job" } }
            dt { "Last seen" } dd { (time(item.last_seen)) " by " a href={"/ui/jobs/" (item.last_job.0)} { "this job" } }
            @if item.reopened > 0 { dt { "Reopened" } dd { (item.reopened) " times" } }
        }
        @if viewer.can_triage {
            button #triage-open type="button" data-opens="triage" { "Triage…" }
            dialog #triage aria-labelledby="triage-title" {
                form data-api={"/findings/" (id)} data-method="PATCH" data-next="reload" {
                    h2 #triage-title { "Triage this item" }
                    label for="triage-status" { "New status" }
                    select #triage-status name="status" required {
                        option value="ignored" { "ignored" }
                        option value="resolved" { "resolved" }
                        option value="open" { "open" }
                    }
                    label for="triage-reason" { "Reason" }
                    select #triage-reason name="reason" {
                        option value="false_positive" { "false positive" }
                        option value="used_in_tests" { "used in tests" }
                        option value="wont_fix" { "won't fix" }
                        option value="revoked" { "revoked (with resolved)" }
                        option value="" { "none (with open)" }
                    }
                    label for="triage-comment" { "Comment" }
                    textarea #triage-comment name="comment" maxlength="2000" rows="3" placeholder="Why (never paste a secret here)" {}
                    p.error role="alert" hidden {}
                    div.actions {
                        button type="submit" { "Record decision" }
                        button type="button" data-closes="triage" { "Cancel" }
                    }
                }
            }
        }
        h2 { "Places (" (item.locations_total) ")" }
        div.scroll {
            table {
                thead { tr { th scope="col" { "Path" } th scope="col" { "Line" } th scope="col" { "Commit" } th scope="col" { "First seen" } th scope="col" { "Last seen" } } }
                tbody {
                    @for l in &item.locations {
                        tr {
                            th scope="row" { code { (l.path) } }
                            td.num { (l.line) }
                            td { @if let Some(c) = &l.commit { code { (c.get(..12).unwrap_or(c)) } } @else { "—" } }
                            td { (time(l.first_seen)) }
                            td { (time(l.last_seen)) }
                        }
                    }
                }
            }
        }
        h2 { "Triage trail" }
        @if item.triage.is_empty() { p.empty { "No decisions yet." } }
        @else {
            ol.timeline #trail {
                @for t in &item.triage {
                    li {
                        (time(t.decided_at)) " " strong { (t.actor) } ": "
                        (item_status(t.from_status)) " → " (item_status(t.to_status))
                        @if let Some(r) = t.reason { " (" (reason(r)) ")" }
                        @if let Some(c) = &t.comment { blockquote { (c) } }
                    }
                }
            }
        }
    }
}

fn reason(r: scanstream_contracts::inventory::TriageReason) -> &'static str {
    use scanstream_contracts::inventory::TriageReason::*;
    match r {
        Revoked => "revoked",
        FalsePositive => "false positive",
        UsedInTests => "used in tests",
        WontFix => "won't fix",
    }
}

/// One repository's row.
#[derive(Default)]
struct RepoRow {
    open: [u64; 5],
    resolved: u64,
    ignored: u64,
    open_in_tip: u64,
    jobs: u64,
    /// (changed, job id, status) of its most recently changed job.
    last: Option<(i64, u128, &'static str)>,
}

pub async fn repos(state: web::Data<AppState>, viewer: Viewer) -> HttpResponse {
    let names = state.index.repos();
    let rows: HashMap<u64, RepoRow> = state.index.with(|jobs, items| {
        let mut rows: HashMap<u64, RepoRow> = HashMap::new();
        for item in items.values() {
            let row = rows.entry(item.repo).or_default();
            match item.status {
                ItemStatus::Open => {
                    row.open[item.severity.rank()] += 1;
                    if item.in_tip {
                        row.open_in_tip += 1;
                    }
                }
                ItemStatus::Resolved => row.resolved += 1,
                ItemStatus::Ignored => row.ignored += 1,
            }
        }
        for job in jobs.values() {
            let row = rows
                .entry(crate::index::repo_key_of(&job.repo))
                .or_default();
            row.jobs += 1;
            if row.last.is_none_or(|(t, _, _)| t < job.updated_at) {
                row.last = Some((job.updated_at, job.id, job_status(job.status)));
            }
        }
        rows
    });
    let mut listed: Vec<(&str, &RepoRow)> = names
        .iter()
        .filter_map(|(k, url)| rows.get(k).map(|r| (url.as_ref(), r)))
        .collect();
    listed.sort_by(|a, b| {
        let open = |r: &RepoRow| r.open.iter().sum::<u64>();
        open(b.1).cmp(&open(a.1)).then(a.0.cmp(b.0))
    });
    let now = scanstream_platform::now_ms();
    let body = html! {
        div.scroll {
            table {
                thead { tr {
                    th scope="col" { "Repository" } th scope="col" { "Open" } th scope="col" { "Critical" } th scope="col" { "High" }
                    th scope="col" { "Open in tip" } th scope="col" { "Resolved" } th scope="col" { "Ignored" } th scope="col" { "Jobs" } th scope="col" { "Last scan" }
                } }
                tbody {
                    @if listed.is_empty() { (empty_row(9, "No repositories scanned yet.")) }
                    @for (url, row) in &listed {
                        tr {
                            th scope="row" { a href={"/ui/findings?status=&repo=" (page::encode(url, false))} { (url) } }
                            td.num { (row.open.iter().sum::<u64>()) }
                            td.num { (row.open[0]) }
                            td.num { (row.open[1]) }
                            td.num { (row.open_in_tip) }
                            td.num { (row.resolved) }
                            td.num { (row.ignored) }
                            td.num { (row.jobs) }
                            td { @if let Some((t, job, status)) = row.last { a href={"/ui/jobs/" (uuid::Uuid::from_u128(job))} { (status) } " " (ago(t, now)) " ago" } @else { "—" } }
                        }
                    }
                }
            }
        }
    };
    page::page(&viewer, "Repositories", "/ui/repos", body)
}
