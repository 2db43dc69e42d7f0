//! The compact seat map as a load generator needs it: seat ids in the
//! order of the `status` letters (rows in order, then seats in order;
//! regular rows spell their ids `SECTION-ROW-NUMBER`), an id → index
//! lookup, and a map's version and statuses. Read with serde into the
//! shared `qt_protocol::frames::Seatmap`, which is fine: snapshots are rare
//! next to diffs (see `scan` for those).

use std::collections::HashMap;

use anyhow::{Context, bail, ensure};
use qt_protocol::frames::{CompactRow, SeatStatus, Seatmap, SeatmapSeats};

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
    /// One status per seat, in `ids` order.
    pub status: Vec<SeatStatus>,
}

/// A map's statuses as the compact form's letters (`f`, `h`, `s`), the
/// form they travel to the workers in.
pub fn letters(status: &[SeatStatus]) -> String {
    status.iter().map(|s| s.code()).collect()
}

/// Letters read back; `None` if one is not a status.
pub fn from_letters(letters: &str) -> Option<Vec<SeatStatus>> {
    letters.chars().map(SeatStatus::from_code).collect()
}

/// The ids a compact row stands for.
fn row_ids(row: &CompactRow, out: &mut Vec<String>) -> anyhow::Result<()> {
    match row {
        CompactRow::Spelled { seats, .. } => out.extend(seats.iter().map(|s| s.id.clone())),
        CompactRow::Run { section, row, n0, count, .. } => {
            ensure!(*count <= 10_000, "a row of {count} seats");
            out.extend((0..*count as i64).map(|k| format!("{section}-{row}-{}", n0 + k)));
        }
    }
    Ok(())
}

/// Reads a compact seat map; refuses the full form.
pub fn parse_compact(text: &str) -> anyhow::Result<CompactMap> {
    let map: Seatmap = serde_json::from_str(text).context("not a seat map")?;
    let SeatmapSeats::Compact { rows, status, .. } = &map.seats else { bail!("a full seat map, not compact") };
    let mut ids = Vec::new();
    for row in rows {
        row_ids(row, &mut ids)?;
    }
    let status = from_letters(status).context("unknown status letter in the map")?;
    ensure!(status.len() == ids.len(), "{} status letters for {} seats", status.len(), ids.len());
    Ok(CompactMap { version: map.version, ids, status })
}

#[cfg(test)]
pub mod tests {
    use qt_protocol::frames::{CompactFormat, RowSeat};
    use qt_protocol::{Req, ServerMsg};

    use super::*;

    /// A compact map of event `e` at `version`: one row `A-1-1`, `A-1-2`, …
    /// with a seat per letter of `status`.
    pub fn one_row(version: u64, status: &str) -> Seatmap {
        let row = CompactRow::Run {
            section: "A".into(),
            row: "1".into(),
            tier: "t".into(),
            y: 0,
            n0: 1,
            x0: 0,
            dx: 1,
            count: status.len() as u64,
        };
        Seatmap {
            event: "e".into(),
            version,
            currency: "KRW".into(),
            tiers: vec![],
            seats: SeatmapSeats::Compact { format: CompactFormat::Compact, rows: vec![row], status: status.into() },
        }
    }

    const MAP: &str = r#"{"type":"seatmap","event":"e","version":4,"currency":"KRW","tiers":[],"format":"compact",
        "rows":[{"section":"A","row":"1","tier":"r","y":60,"n0":1,"x0":0,"dx":12,"count":3},
                {"section":"B","row":"1","seats":[{"id":"box-1","number":1,"x":0,"y":0,"tier":"vip"}]}],
        "status":"fhfs","req":1}"#;

    #[test]
    fn expands_rows_in_status_order() {
        let m = parse_compact(MAP).unwrap();
        assert_eq!(m.version, 4);
        assert_eq!(m.ids, ["A-1-1", "A-1-2", "A-1-3", "box-1"]);
        assert_eq!(letters(&m.status), "fhfs");
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

    /// The shared type, as the server encodes it, reads back as the same
    /// seats in the same order.
    #[test]
    fn reads_the_shared_compact_map_as_encoded() {
        let mut map = one_row(9, "shf");
        if let SeatmapSeats::Compact { rows, .. } = &mut map.seats {
            rows.push(CompactRow::Spelled {
                section: "Box".into(),
                row: "1".into(),
                seats: vec![RowSeat { id: "box-\"1\"".into(), number: 1, x: 0, y: 0, tier: "t".into() }],
            });
        }
        if let SeatmapSeats::Compact { status, .. } = &mut map.seats {
            status.push('h');
        }
        let text = qt_protocol::encode(&ServerMsg::Seatmap(map.clone()), Some(&Req::Int(1)));
        let m = parse_compact(&text).unwrap();
        let expected = map.statuses();
        assert_eq!(m.version, 9);
        assert_eq!(m.ids, expected.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
        assert_eq!(m.status, expected.iter().map(|(_, s)| *s).collect::<Vec<_>>());
        assert_eq!(from_letters("fhs"), Some(vec![SeatStatus::Free, SeatStatus::Held, SeatStatus::Sold]));
        assert_eq!(from_letters("fx"), None);
    }
}
