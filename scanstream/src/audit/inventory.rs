//! The inventory part of `scanstream audit`: proves that `scans.inventory` (and, with
//! `--api-url`, `GET /findings/{id}`) equals the fold of `scans.sightings` and `scans.triage`.
//!
//! The snapshot is the inventory fold's committed offsets on both inputs and the changelog read
//! to its end, repeated until the offsets did not move meanwhile. The audit folds each input
//! topic up to those offsets with the aggregator's own fold (`fold_batch`): sightings in
//! partition order, then the decisions. The processor reads the two topics side by side; the
//! fold's laws make the result the same whatever the interleaving, except `inputs_folded` and
//! `updated_at`, which count and date the changes as they happened and are not compared.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, bail};
use scanstream_aggregator::inventory::fold::{Input, fold_batch};
use scanstream_contracts::inventory::{InventoryItem, ItemId};
use scanstream_contracts::{Topic, TopicNames};
use scanstream_platform::Settings;
use serde::Serialize;

use super::{Difference, REPORT_DIFFERENCES, committed, latest};
use crate::replay::{self, Bound, Decoded, Filters, Sink, Source, Window};

/// Fields that record when and how often an item changed as it was folded, not what it is.
const NOT_COMPARED: [&str; 2] = ["inputs_folded", "updated_at"];

/// The inventory's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryReport {
    pub changelog_topic: String,
    /// The inventory fold's committed offset per input topic and partition.
    pub folded_through: BTreeMap<String, BTreeMap<i32, i64>>,
    pub inputs_folded: u64,
    /// Inputs that could not be decoded (the fold skips and counts them too).
    pub undecodable_inputs: u64,
    pub items_checked: u64,
    pub equal: u64,
    pub differing: u64,
    pub missing: u64,
    pub differences: Vec<Difference>,
}

impl InventoryReport {
    pub fn consistent(&self) -> bool {
        self.differing == 0 && self.missing == 0 && self.undecodable_inputs == 0
    }
}

/// The latest changelog record of every item.
async fn changelog(
    settings: &Settings,
    names: &TopicNames,
) -> anyhow::Result<HashMap<ItemId, InventoryItem>> {
    latest(
        settings,
        names,
        Topic::Inventory,
        |decoded| match decoded {
            Decoded::Item(item) => Some((item.item_id, item.clone())),
            _ => None,
        },
        ItemId::parse,
    )
    .await
}

/// Every input of `topic` up to `through`.
async fn inputs(
    settings: &Settings,
    names: &TopicNames,
    topic: Topic,
    through: &BTreeMap<i32, i64>,
    out: &mut Vec<Input>,
) -> anyhow::Result<u64> {
    let source = Source {
        name: names.name(topic),
        kind: topic,
    };
    let outcome = replay::run(
        settings,
        &source,
        &Window {
            from: None,
            to: Some(Bound::Offsets(through.clone())),
        },
        &Filters::default(),
        Sink::Digest,
        false,
        |record| match &record.value {
            Some(Decoded::Sighting(s)) => out.push(Input::Sighting(s.clone())),
            Some(Decoded::Triage(d)) => out.push(Input::Decision(d.clone())),
            _ => {}
        },
    )
    .await?;
    Ok(outcome.undecodable)
}

fn compared(item: &InventoryItem) -> serde_json::Map<String, serde_json::Value> {
    let mut value = match serde_json::to_value(item) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    for field in NOT_COMPARED {
        value.remove(field);
    }
    value
}

fn fields_differing(
    a: &InventoryItem,
    b: &InventoryItem,
) -> BTreeMap<String, (serde_json::Value, serde_json::Value)> {
    let (a, b) = (compared(a), compared(b));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (x, y) = (
                a.get(key).cloned().unwrap_or_default(),
                b.get(key).cloned().unwrap_or_default(),
            );
            (x != y).then(|| (key.clone(), (x, y)))
        })
        .collect()
}

/// Audits the whole inventory.
pub async fn audit(
    settings: &Settings,
    api: Option<&crate::client::Api>,
) -> anyhow::Result<InventoryReport> {
    let names = TopicNames::new(settings.topics.prefix.clone());
    let group = scanstream_platform::access::inventory_group(
        &scanstream_platform::access::group_id(settings, &settings.aggregator.group_id),
    );
    let topics = [Topic::Sightings, Topic::Triage];
    let snapshot = || async {
        let mut offsets = BTreeMap::new();
        for topic in topics {
            let name = names.name(topic);
            offsets.insert(name.clone(), committed(settings, &group, &name).await?);
        }
        anyhow::Ok(offsets)
    };
    let mut attempt = 0;
    let (folded_through, shown) = loop {
        attempt += 1;
        let before = snapshot().await?;
        let shown = changelog(settings, &names).await?;
        if before == snapshot().await? {
            break (before, shown);
        }
        if attempt >= 5 {
            bail!(
                "the inventory fold kept committing while scans.inventory was read (5 attempts); audit a quieter moment or stop the aggregators"
            );
        }
    };
    let mut all = Vec::new();
    let mut undecodable_inputs = 0;
    for topic in topics {
        let through = &folded_through[&names.name(topic)];
        undecodable_inputs += inputs(settings, &names, topic, through, &mut all).await?;
    }
    let mut folded: HashMap<ItemId, InventoryItem> = HashMap::new();
    fold_batch(&all, &mut folded);

    let mut report = InventoryReport {
        changelog_topic: names.name(Topic::Inventory),
        folded_through,
        inputs_folded: all.len() as u64,
        undecodable_inputs,
        items_checked: 0,
        equal: 0,
        differing: 0,
        missing: 0,
        differences: Vec::new(),
    };
    let ids: BTreeSet<ItemId> = folded.keys().chain(shown.keys()).copied().collect();
    for id in ids {
        report.items_checked += 1;
        let expected = folded.get(&id);
        let from_api = match api {
            Some(api) => {
                let (status, body) = api
                    .get_json(&format!("/findings/{id}"))
                    .await
                    .with_context(|| format!("GET /findings/{id}"))?;
                Some(match status {
                    200 => Some(
                        serde_json::from_value::<InventoryItem>(body)
                            .with_context(|| format!("GET /findings/{id} is not an item"))?,
                    ),
                    404 => None,
                    other => bail!("GET /findings/{id} answered {other}"),
                })
            }
            None => None,
        };
        let mut equal = true;
        let sources = [
            ("changelog", Some(shown.get(&id).cloned())),
            ("api", from_api),
        ];
        for (source, actual) in sources {
            let Some(actual) = actual else { continue };
            let (kind, fields) = match (expected, actual.as_ref()) {
                (Some(e), Some(a)) => {
                    let fields = fields_differing(e, a);
                    if fields.is_empty() {
                        continue;
                    }
                    ("differs", fields)
                }
                (Some(_), None) => ("missing", BTreeMap::new()),
                (None, Some(_)) => ("unexpected", BTreeMap::new()),
                (None, None) => continue,
            };
            equal = false;
            match kind {
                "differs" => report.differing += 1,
                _ => report.missing += 1,
            }
            if report.differences.len() < REPORT_DIFFERENCES {
                report.differences.push(Difference {
                    job: id.to_string(),
                    name: expected
                        .or(actual.as_ref())
                        .map(|i| format!("{} {}", i.repo_url, i.rule_id))
                        .unwrap_or_default(),
                    source,
                    kind,
                    fields,
                });
            }
        }
        if equal {
            report.equal += 1;
        }
    }
    Ok(report)
}
