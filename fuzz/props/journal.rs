//! Journal records and exported journal files.

use devloop::journal::record::{open, seal, FORMAT_VERSION};
use devloop::journal::replay::replay;
use devloop::journal::{self, Hash, JournalError};
use devloop::render;

use super::one_line;

/// One stored record (`rmp(content) ++ blake3`). Raw bytes almost never carry a valid hash, so
/// the bytes are also tried with a correct hash appended: that reaches the decoder.
pub fn record(data: &[u8]) {
    check_record(data, true);
    let mut hashed = data.to_vec();
    hashed.extend_from_slice(&Hash::of(data).0);
    check_record(&hashed, false);
}

fn check_record(bytes: &[u8], written_by_loop: bool) {
    match open(bytes) {
        Err(e) => one_line(&e.to_string()),
        Ok(mut rec) => {
            assert_eq!(rec.hash, Hash::of(&bytes[..bytes.len() - 32]), "hash is not of the stored bytes");
            if rec.content.version != FORMAT_VERSION {
                // A record of an older format, converted on read: it keeps its version (its hash
                // is of the old bytes), and its content must be expressible in today's format.
                rec.content.version = FORMAT_VERSION;
                let (sealed, _) = seal(&rec.content);
                let now = open(&sealed).expect("an old record's content seals in today's format");
                assert_eq!(now.content, rec.content, "an old record's content changed when re-sealed");
                return;
            }
            let (sealed, hash) = seal(&rec.content);
            if written_by_loop && sealed != bytes {
                // Only `seal` makes valid hashes (a fuzzer cannot forge blake3), so a record that
                // verifies was written by some version of loop: by this one it re-encodes to
                // exactly its bytes; an older one of the same format may lack fields added since
                // (trailing, defaulted), so today's encoding only ever adds to it.
                assert!(sealed.len() > bytes.len(), "a verified record re-encodes to different bytes of the same size");
            }
            let again = open(&sealed).expect("a sealed record opens");
            assert_eq!(again.content, rec.content, "re-encoding changed the content");
            assert_eq!(again.hash, hash);
            assert_eq!(seal(&again.content).0, sealed, "encoding is not a fixed point");
        }
    }
}

const FILE: &str = "fuzz.loopjnl";

/// A whole export file: framing, chain verification, replay.
pub fn export_file(data: &[u8]) {
    export_file_with(data, 16);
}

/// `flips` bounds how many single-byte edits of a verified file are tried (every byte when
/// `usize::MAX`): the fuzzer wants speed, the corpus replay in `cargo test` wants all of them.
pub fn export_file_with(data: &[u8], flips: usize) {
    let store = match journal::parse_export(data, FILE) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            one_line(&msg);
            assert!(msg.starts_with(&format!("journal file {FILE}: ")), "does not name the file: {msg}");
            return;
        }
    };
    // Rendered as `loop replay --json` renders it, so the renderers see every decoded record.
    let verdict = replay(&store, |rec, applied| {
        assert!(!render::timeline_line(rec, applied).contains('\n'), "timeline line spans lines");
        render::record_json(rec, applied);
    });
    let records = match journal::read_all(&store) {
        Err(e) => {
            let msg = e.to_string();
            one_line(&msg);
            if let JournalError::Corrupt { seq, .. } = e {
                assert!(seq <= store.records.len() as u64, "names record {seq} of {}", store.records.len());
            }
            assert!(verdict.error.is_some(), "replay accepted a journal that does not verify");
            return;
        }
        Ok(r) => r,
    };
    // Only real journals get here (see `record`); replay must agree with the code that wrote them.
    if let Some(e) = verdict.error {
        let msg = e.to_string();
        let code = devloop::cli::CliError::from(e).exit_code();
        panic!("verified journal fails replay with exit {}: {msg}", code.code());
    }
    assert_eq!(verdict.records, records.len() as u64);

    let mut out = Vec::new();
    journal::export(&store, &mut out).expect("a verified journal exports");
    let v2 = data.starts_with(journal::EXPORT_MAGIC);
    if v2 {
        assert_eq!(out, data, "re-export is not byte-identical");
    } else {
        // A version-1 file re-exports as version 2: the same records, plus the trailer.
        let again = journal::parse_export(&out, FILE).expect("a re-export parses");
        assert_eq!(journal::read_all(&again).expect("a re-export verifies"), records, "re-export changed the records");
    }

    // Any changed byte fails verification (the file was verified, so every change is a change).
    let positions: Vec<usize> = if flips == usize::MAX {
        (0..data.len()).collect()
    } else {
        let h = Hash::of(data).0;
        (0..flips)
            .map(|i| {
                u32::from_le_bytes([h[i % 8 * 4], h[i % 8 * 4 + 1], h[i % 8 * 4 + 2], i as u8]) as usize % data.len()
            })
            .collect()
    };
    for &p in &positions {
        let mut bad = data.to_vec();
        bad[p] ^= 1 << (p % 8);
        let ok = journal::parse_export(&bad, FILE).ok().and_then(|s| journal::read_all(&s).ok());
        assert!(ok.is_none(), "changing byte {p} of a verified journal went unnoticed");
    }
    // A cut inside a record fails. A version-2 cut anywhere fails (the trailer is gone); a
    // version-1 cut between records is the shorter journal it looks like (it has no trailer).
    let mut bounds = vec![8usize];
    for (_, bytes) in &store.records {
        bounds.push(bounds.last().expect("non-empty") + 4 + bytes.len());
    }
    let cuts: Vec<usize> = if flips == usize::MAX { (0..data.len()).collect() } else { positions };
    for cut in cuts {
        let got = journal::parse_export(&data[..cut], FILE).ok().and_then(|s| journal::read_all(&s).ok());
        match bounds.iter().position(|&b| b == cut) {
            Some(k) if k > 0 && !v2 => assert_eq!(got.as_deref(), Some(&records[..k]), "cut after record {k}"),
            _ => assert!(got.is_none(), "a journal cut at byte {cut} verified"),
        }
    }
}

/// A journal file (format 2) as found on disk after anything: never a panic, damage in one line
/// naming a record, and never a clean read with fewer records than its head says were durable.
/// For a clean file, every truncation is damage, a torn tail, or keeps what the head claims.
pub fn log_file(data: &[u8]) {
    use devloop::journal::log::scan_bytes;
    let scan = scan_bytes(data, None);
    check_scan(&scan);
    if scan.damage.is_none() && scan.torn.is_none() && scan.head.is_some() {
        let step = (data.len() / 64).max(1);
        for cut in (0..data.len()).step_by(step) {
            check_scan(&scan_bytes(&data[..cut], None));
        }
    }
}

fn check_scan(scan: &devloop::journal::log::Scan) {
    if let Some(d) = &scan.damage {
        one_line(&d.reason);
        return;
    }
    if let Some(h) = scan.head {
        assert!(scan.records.len() as u64 >= h.count, "a clean read with fewer records than the head claims");
    }
    for (i, (seq, _)) in scan.records.iter().enumerate() {
        assert_eq!(*seq, i as u64, "records out of order");
    }
}
