//! The `seatmap` view of an event's seats: the contract's full form, and
//! a compact form (rows as runs, statuses as one letter per seat) for large
//! venues. Typed values; the transports encode them.

use qt_protocol::Format;
use qt_protocol::frames::{CompactFormat, CompactRow, MapSeat, RowSeat, Seatmap, SeatmapSeats};

use crate::domain::event::Event;
use crate::domain::seats::{Row, SeatLayout, SeatStatus};

/// A row of the compact form: a regular run (`count` seats numbered from
/// `n0`, at `x0 + i·dx`, ids `SECTION-ROW-NUMBER`, one tier) or, when the
/// row is irregular, its seats spelled out.
fn compact_row(layout: &SeatLayout, row: &Row) -> CompactRow {
    let seats: Vec<_> = row.seats.iter().map(|&i| &layout.seats[i]).collect();
    let first = seats[0];
    let dx = seats.get(1).map_or(0, |s| s.x - first.x);
    let regular = seats.iter().enumerate().all(|(k, s)| {
        s.number == first.number + k as i64
            && s.x == first.x + k as i64 * dx
            && s.y == first.y
            && s.tier == first.tier
            && s.id == format!("{}-{}-{}", s.section, s.row, s.number)
    });
    if regular {
        CompactRow::Run {
            section: row.section.clone(),
            row: row.label.clone(),
            tier: first.tier.clone(),
            y: first.y,
            n0: first.number,
            x0: first.x,
            dx,
            count: seats.len() as u64,
        }
    } else {
        CompactRow::Spelled {
            section: row.section.clone(),
            row: row.label.clone(),
            seats: seats
                .iter()
                .map(|s| RowSeat { id: s.id.clone(), number: s.number, x: s.x, y: s.y, tier: s.tier.clone() })
                .collect(),
        }
    }
}

/// The `seatmap` of a replica at `version`.
pub fn seatmap_view(
    event: &Event,
    version: u64,
    layout: &SeatLayout,
    status: &[SeatStatus],
    format: Format,
) -> Seatmap {
    let seats = match format {
        Format::Full => SeatmapSeats::Full {
            seats: layout
                .seats
                .iter()
                .zip(status)
                .map(|(s, &status)| MapSeat {
                    id: s.id.clone(),
                    section: s.section.clone(),
                    row: s.row.clone(),
                    number: s.number,
                    x: s.x,
                    y: s.y,
                    tier: s.tier.clone(),
                    status,
                })
                .collect(),
        },
        Format::Compact => SeatmapSeats::Compact {
            format: CompactFormat::Compact,
            rows: layout.rows.iter().map(|r| compact_row(layout, r)).collect(),
            status: layout.rows.iter().flat_map(|r| r.seats.iter().map(|&i| status[i].code())).collect(),
        },
    };
    Seatmap { event: event.id.clone(), version, currency: event.currency.clone(), tiers: event.tiers.clone(), seats }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::domain::demo;
    use crate::domain::event::Seat;

    fn seatmap_frame(e: &Event, version: u64, layout: &SeatLayout, status: &[SeatStatus], format: Format) -> String {
        qt_protocol::encode(&qt_protocol::ServerMsg::Seatmap(seatmap_view(e, version, layout, status, format)), None)
    }

    /// Expands a compact snapshot back into (id, status) pairs.
    fn expand(v: &Value) -> Vec<(String, char)> {
        let status: Vec<char> = v["status"].as_str().unwrap().chars().collect();
        let mut out = Vec::new();
        for row in v["rows"].as_array().unwrap() {
            if let Some(seats) = row["seats"].as_array() {
                for s in seats {
                    out.push(s["id"].as_str().unwrap().to_owned());
                }
            } else {
                for k in 0..row["count"].as_i64().unwrap() {
                    let n = row["n0"].as_i64().unwrap() + k;
                    out.push(format!("{}-{}-{n}", row["section"].as_str().unwrap(), row["row"].as_str().unwrap()));
                }
            }
        }
        out.into_iter().zip(status).collect()
    }

    #[test]
    fn compact_and_full_forms_agree() {
        let layout = SeatLayout::new(demo::seats());
        let mut status = vec![SeatStatus::Free; layout.len()];
        status[layout.index_of("C-3-12").unwrap()] = SeatStatus::Held;
        status[layout.index_of("A-20-1").unwrap()] = SeatStatus::Sold;
        let e = demo::event(0);
        let full: Value = serde_json::from_str(&seatmap_frame(&e, 7, &layout, &status, Format::Full)).unwrap();
        let compact: Value = serde_json::from_str(&seatmap_frame(&e, 7, &layout, &status, Format::Compact)).unwrap();
        assert_eq!(full["version"], 7);
        assert_eq!(full["seats"].as_array().unwrap().len(), layout.len());
        let mut from_full: Vec<(String, char)> = full["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().chars().next().unwrap()))
            .collect();
        let mut from_compact = expand(&compact);
        from_full.sort();
        from_compact.sort();
        assert_eq!(from_full, from_compact);
        assert!(from_compact.contains(&("C-3-12".into(), 'h')));
    }

    #[test]
    fn irregular_rows_are_spelled_out() {
        let seats = vec![
            Seat { id: "box-1".into(), section: "B".into(), row: "1".into(), number: 1, x: 0, y: 0, tier: "t".into() },
            Seat { id: "box-2".into(), section: "B".into(), row: "1".into(), number: 2, x: 10, y: 0, tier: "t".into() },
        ];
        let layout = SeatLayout::new(seats);
        let status = [SeatStatus::Free, SeatStatus::Held];
        let v: Value =
            serde_json::from_str(&seatmap_frame(&demo::event(0), 0, &layout, &status, Format::Compact)).unwrap();
        assert_eq!(expand(&v), vec![("box-1".to_string(), 'f'), ("box-2".to_string(), 'h')]);
    }

    /// The contract's figure: a 20,000-seat venue's snapshot stays well
    /// under 1 MiB in compact form.
    #[test]
    fn a_twenty_thousand_seat_snapshot_is_compact() {
        let mut seats = Vec::new();
        for section in 0..10 {
            for row in 1..=50 {
                for n in 1..=40 {
                    seats.push(Seat {
                        id: format!("S{section}-{row}-{n}"),
                        section: format!("S{section}"),
                        row: row.to_string(),
                        number: n,
                        x: section * 520 + n * 12,
                        y: row * 14,
                        tier: if row < 10 { "r" } else { "s" }.into(),
                    });
                }
            }
        }
        let layout = SeatLayout::new(seats);
        assert_eq!(layout.len(), 20_000);
        let status: Vec<SeatStatus> =
            (0..layout.len()).map(|i| if i % 7 == 0 { SeatStatus::Held } else { SeatStatus::Free }).collect();
        let e = demo::event(0);
        let compact = seatmap_frame(&e, 1, &layout, &status, Format::Compact);
        let full = seatmap_frame(&e, 1, &layout, &status, Format::Full);
        eprintln!("20,000 seats: compact {} bytes, full {} bytes", compact.len(), full.len());
        assert!(compact.len() < 128 * 1024, "compact snapshot is {} bytes", compact.len());
    }
}
