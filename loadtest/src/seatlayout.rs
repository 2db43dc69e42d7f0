//! The compact seat map as a load generator needs it: seat ids in the
//! order of the `status` letters (rows in order, then seats in order;
//! regular rows spell their ids `SECTION-ROW-NUMBER`), an id → index
//! lookup, and a map's version and letters. Parsed with serde_json, which is
//! fine: snapshots are rare next to diffs (see `seatscan` for those).

use std::collections::HashMap;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

/// Seat ids in snapshot order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub ids: Vec<String>,
    index: HashMap<String, u16>,
}

impl Layout {
    pub fn new(ids: Vec<String>) -> anyhow::Result<Self> {
        ensure!(ids.len() <= usize::from(u16::MAX), "more than {} seats", u16::MAX);
        let index: HashMap<String, u16> = ids.iter().enumerate().map(|(i, id)| (id.clone(), i as u16)).collect();
        ensure!(index.len() == ids.len(), "a seat id appears twice in the map");
        Ok(Self { ids, index })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn index_of(&self, id: &str) -> Option<u16> {
        self.index.get(id).copied()
    }
}

/// A compact `seatmap` (WebSocket frame or REST body), read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactMap {
    pub version: u64,
    pub ids: Vec<String>,
    /// One letter per seat (`f`, `h`, `s`), in `ids` order.
    pub status: Vec<u8>,
}

#[derive(Deserialize)]
struct Raw {
    version: u64,
    #[serde(default)]
    format: Option<String>,
    rows: Vec<Value>,
    status: String,
}

/// The ids a compact row stands for.
fn row_ids(row: &Value, out: &mut Vec<String>) -> anyhow::Result<()> {
    if let Some(seats) = row.get("seats") {
        for s in seats.as_array().context("`seats` of an irregular row is not a list")? {
            out.push(s["id"].as_str().context("a spelled-out seat has no id")?.to_owned());
        }
        return Ok(());
    }
    let section = row["section"].as_str().context("a row has no section")?;
    let label = row["row"].as_str().context("a row has no label")?;
    let n0 = row["n0"].as_i64().context("a regular row has no n0")?;
    let count = row["count"].as_i64().context("a regular row has no count")?;
    ensure!((0..=10_000).contains(&count), "a row of {count} seats");
    out.extend((0..count).map(|k| format!("{section}-{label}-{}", n0 + k)));
    Ok(())
}

/// Reads a compact seat map; refuses the full form.
pub fn parse_compact(text: &str) -> anyhow::Result<CompactMap> {
    let raw: Raw = serde_json::from_str(text).context("not a compact seat map")?;
    if raw.format.as_deref().is_some_and(|f| f != "compact") {
        bail!("seat map format {:?}, not compact", raw.format);
    }
    let mut ids = Vec::new();
    for row in &raw.rows {
        row_ids(row, &mut ids)?;
    }
    let status = raw.status.into_bytes();
    ensure!(status.len() == ids.len(), "{} status letters for {} seats", status.len(), ids.len());
    ensure!(status.iter().all(|c| matches!(c, b'f' | b'h' | b's')), "unknown status letter in the map");
    Ok(CompactMap { version: raw.version, ids, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"{"type":"seatmap","event":"e","version":4,"tiers":[],"format":"compact",
        "rows":[{"section":"A","row":"1","tier":"r","y":60,"n0":1,"x0":0,"dx":12,"count":3},
                {"section":"B","row":"1","seats":[{"id":"box-1","number":1,"x":0,"y":0,"tier":"vip"}]}],
        "status":"fhfs","req":1}"#;

    #[test]
    fn expands_rows_in_status_order() {
        let m = parse_compact(MAP).unwrap();
        assert_eq!(m.version, 4);
        assert_eq!(m.ids, ["A-1-1", "A-1-2", "A-1-3", "box-1"]);
        assert_eq!(m.status, b"fhfs");
        let layout = Layout::new(m.ids).unwrap();
        assert_eq!((layout.len(), layout.index_of("A-1-3"), layout.index_of("nope")), (4, Some(2), None));
    }

    #[test]
    fn refuses_inconsistent_maps() {
        assert!(parse_compact(&MAP.replace("fhfs", "fhf")).is_err(), "one letter short");
        assert!(parse_compact(&MAP.replace("fhfs", "fhfx")).is_err(), "unknown letter");
        assert!(parse_compact(&MAP.replace("compact", "full")).is_err());
        assert!(parse_compact("{}").is_err());
        assert!(Layout::new(vec!["a".into(), "a".into()]).is_err());
    }
}
