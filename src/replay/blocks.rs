//! One input read and decoded on a thread of its own, in blocks of whole lines, while the
//! caller's thread ingests: replay's throughput is then the engine's, not the engine's plus
//! the decoder's.
//!
//! Decoding is shared as the Kafka driver shares it: the reader decodes a block when the
//! ingesting thread has blocks waiting (the engine is the slower side), and otherwise hands it
//! over as read, to be decoded by the ingesting thread. Blocks and the feature lists of their
//! events go back to the reader for reuse, so a long replay allocates little.

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};

use memchr::{memchr, memrchr};

use crate::event::{is_blank, take_features, BadInput, Decoder, Event, Features};

/// Bytes read per block (a longer line makes its block longer).
pub(super) const BLOCK_BYTES: usize = 1 << 17;
/// Blocks read ahead of the ingesting thread, at most.
const AHEAD: usize = 4;

type Decoded<'a> = Vec<Result<Event<'a>, BadInput>>;

self_cell::self_cell!(
    /// A block's bytes with the events decoded from (and borrowing) them, one per line.
    struct DecodedBlock {
        owner: Vec<u8>,
        #[covariant]
        dependent: Decoded,
    }
);

/// Whole lines of one input: the lines that are not blank, by number and byte range.
#[derive(Default)]
pub(super) struct Block {
    /// The bytes, while not decoded.
    data: Vec<u8>,
    /// Line number and byte range (without the line end) of each line that is not blank.
    lines: Vec<(u64, usize, usize)>,
    /// Lines in the block, blank ones included.
    pub(super) line_count: u64,
    /// Bytes read from the input for this block.
    pub(super) bytes: u64,
    decoded: Option<DecodedBlock>,
    /// Emptied feature lists, on their way back to the reader's decoder.
    spares: Vec<Features<'static>>,
}

impl Block {
    /// Decodes every line (unless the reader did).
    fn decode(&mut self, decoder: &mut Decoder) {
        if self.decoded.is_some() {
            return;
        }
        let lines = &self.lines;
        self.decoded = Some(DecodedBlock::new(std::mem::take(&mut self.data), |data| {
            lines.iter().map(|&(_, a, b)| decoder.decode(&data[a..b])).collect()
        }));
    }

    /// Hands each line's number, bytes and decoded event, in order, to `f` (a block from
    /// [`Blocks::next`] is decoded).
    pub(super) fn each<E>(
        &mut self,
        mut f: impl FnMut(u64, &[u8], Result<&Event<'_>, &BadInput>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Block { lines, decoded, spares, .. } = self;
        let Some(decoded) = decoded.as_mut() else { return Ok(()) };
        decoded.with_dependent_mut(|data, events| {
            for (&(line_no, a, b), ev) in lines.iter().zip(events.iter_mut()) {
                f(line_no, &data[a..b], ev.as_ref())?;
                if let Ok(ev) = ev {
                    if ev.features.capacity() > 0 {
                        spares.push(take_features(ev));
                    }
                }
            }
            events.clear();
            Ok(())
        })
    }

    /// Empties the block for reuse, keeping its buffers.
    fn clear(&mut self) -> Vec<u8> {
        let mut data = match self.decoded.take() {
            Some(d) => d.into_owner(),
            None => std::mem::take(&mut self.data),
        };
        data.clear();
        // A block that held a very long line does not keep its buffer.
        data.shrink_to(2 * BLOCK_BYTES);
        self.lines.clear();
        self.line_count = 0;
        self.bytes = 0;
        data
    }
}

/// The ingesting side of a reader thread.
pub(super) struct Blocks<'a> {
    full: Receiver<io::Result<Block>>,
    spare: mpsc::Sender<Block>,
    waiting: &'a AtomicUsize,
    /// Decodes blocks the reader handed over as read.
    decoder: Decoder,
}

impl Blocks<'_> {
    /// The next block, decoded, or `None` at the end of the input.
    pub(super) fn next(&mut self) -> io::Result<Option<Block>> {
        match self.full.recv() {
            Ok(block) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                let mut block = block?;
                block.decode(&mut self.decoder);
                Ok(Some(block))
            }
            Err(_) => Ok(None),
        }
    }

    /// Gives an ingested block back to the reader.
    pub(super) fn give_back(&mut self, block: Block) {
        // The reader may have ended: then the block is dropped.
        let _ = self.spare.send(block);
    }
}

/// Runs `ingest` with the blocks of `reader`, read and decoded on another thread.
pub(super) fn with_blocks<T>(
    reader: Box<dyn Read + Send>,
    ingest: impl FnOnce(&mut Blocks<'_>) -> io::Result<T>,
) -> io::Result<T> {
    let waiting = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel(AHEAD);
        let (spare_tx, spare_rx) = mpsc::channel();
        let waiting = &waiting;
        std::thread::Builder::new()
            .name("dw-read".into())
            .spawn_scoped(scope, move || read_blocks(reader, full_tx, spare_rx, waiting))?;
        let mut blocks = Blocks { full: full_rx, spare: spare_tx, waiting, decoder: Decoder::default() };
        // Dropping `blocks` (on return or error) ends the reader at its next block.
        ingest(&mut blocks)
    })
}

/// The reader thread: reads blocks of whole lines and sends them on until the input ends, an
/// error (sent on too), or the ingesting side is gone.
fn read_blocks(
    mut reader: Box<dyn Read + Send>,
    full: SyncSender<io::Result<Block>>,
    spare: Receiver<Block>,
    waiting: &AtomicUsize,
) {
    let mut decoder = Decoder::default();
    // Bytes after the last line end read so far: the start of the next block's first line.
    let mut carry: Vec<u8> = Vec::new();
    let mut line_no = 0u64;
    let mut eof = false;
    while !eof {
        let mut block = spare.try_recv().unwrap_or_default();
        for f in block.spares.drain(..) {
            decoder.give(f);
        }
        let mut data = block.clear();
        data.extend_from_slice(&carry);
        carry.clear();
        let mut filled = data.len();
        // Read until the block is full and holds a line end, or the input ends. A read that
        // does not fill the room (a pipe or terminal with nothing more for now) also ends the
        // block once it holds a line end: the lines of a live input are ingested as they come,
        // not when a block's worth has arrived. (The bytes carried over hold no line end.)
        let mut has_line_end = false;
        loop {
            if data.len() < filled + BLOCK_BYTES / 4 {
                data.resize(filled + BLOCK_BYTES, 0);
            }
            let room = data.len() - filled;
            let n = match reader.read(&mut data[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = full.send(Err(e));
                    return;
                }
            };
            block.bytes += n as u64;
            filled += n;
            if n == 0 {
                eof = true;
                break;
            }
            has_line_end = has_line_end || memchr(b'\n', &data[filled - n..filled]).is_some();
            if has_line_end && (filled >= BLOCK_BYTES || n < room) {
                break;
            }
        }
        data.truncate(filled);
        let end = if eof { filled } else { memrchr(b'\n', &data).map_or(filled, |i| i + 1) };
        carry.extend_from_slice(&data[end..]);
        data.truncate(end);
        split_lines(&data, &mut line_no, &mut block);
        block.data = data;
        if block.line_count == 0 && block.bytes == 0 {
            break;
        }
        // Decode here while the ingesting side has work waiting; else it decodes.
        if waiting.load(Ordering::Relaxed) > 0 {
            block.decode(&mut decoder);
        }
        waiting.fetch_add(1, Ordering::Relaxed);
        if full.send(Ok(block)).is_err() {
            return;
        }
    }
}

/// Files the lines of `data` (whole lines, the last one possibly without its end) in `block`.
fn split_lines(data: &[u8], line_no: &mut u64, block: &mut Block) {
    let mut pos = 0;
    while pos < data.len() {
        let (end, next) = match memchr(b'\n', &data[pos..]) {
            Some(i) => (pos + i, pos + i + 1),
            None => (data.len(), data.len()),
        };
        *line_no += 1;
        block.line_count += 1;
        let trimmed = if end > pos && data[end - 1] == b'\r' { end - 1 } else { end };
        if !is_blank(&data[pos..trimmed]) {
            block.lines.push((*line_no, pos, trimmed));
        }
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` in pieces of at most `piece` bytes (as a pipe delivers them).
    struct Pieces {
        input: Vec<u8>,
        at: usize,
        piece: usize,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.piece.min(buf.len()).min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// Every line, by number, with its text (for a valid event, its id) or its bad reason.
    fn read_all(input: &[u8], piece: usize) -> (Vec<(u64, String)>, u64, u64) {
        let reader = Box::new(Pieces { input: input.to_vec(), at: 0, piece });
        with_blocks(reader, |blocks| {
            let (mut seen, mut lines, mut bytes) = (Vec::new(), 0, 0);
            while let Some(mut block) = blocks.next()? {
                lines += block.line_count;
                bytes += block.bytes;
                block.each(|n, raw, ev| {
                    let what = match ev {
                        Ok(ev) => format!("{} {}", ev.event_id.as_deref().unwrap_or("-"), raw.len()),
                        Err(bad) => bad.reason.as_str().to_owned(),
                    };
                    seen.push((n, what));
                    Ok::<_, io::Error>(())
                })?;
                blocks.give_back(block);
            }
            Ok((seen, lines, bytes))
        })
        .expect("in-memory input")
    }

    #[test]
    fn lines_come_in_order_with_their_numbers_however_the_input_is_cut() {
        let event = |i: usize| {
            format!(
                r#"{{"type":"prediction","timestamp":1700000000000,"event_id":"e{i}","model":"m","model_version":"1","prediction":{i}}}"#
            )
        };
        // Lines of every length around the block size, blank lines, a CRLF line, a bad line,
        // and a last line without its end.
        let mut input = String::new();
        let mut expected = Vec::new();
        let mut n = 0u64;
        for i in 0..20_000 {
            n += 1;
            match i % 997 {
                5 => input.push_str("   \n"),
                6 => {
                    input.push_str("{not json\n");
                    expected.push((n, "invalid_json".to_owned()));
                }
                7 => {
                    let e = event(i);
                    input.push_str(&format!("{e}\r\n"));
                    expected.push((n, format!("e{i} {}", e.len())));
                }
                _ => {
                    let e = format!("{}{}", event(i), " ".repeat(i % 13));
                    input.push_str(&format!("{e}\n"));
                    expected.push((n, format!("e{i} {}", e.len())));
                }
            }
        }
        let long = format!("{}{}", event(20_000), " ".repeat(3 * BLOCK_BYTES));
        input.push_str(&format!("{long}\n"));
        expected.push((n + 1, format!("e20000 {}", long.len())));
        let last = event(20_001);
        input.push_str(&last);
        expected.push((n + 2, format!("e20001 {}", last.len())));
        for piece in [1 << 20, 4096, 77] {
            let (seen, lines, bytes) = read_all(input.as_bytes(), piece);
            assert_eq!(lines, n + 2, "piece {piece}");
            assert_eq!(bytes, input.len() as u64, "piece {piece}");
            assert_eq!(seen.len(), expected.len(), "piece {piece}");
            let first = seen.iter().zip(&expected).find(|(a, b)| a != b);
            assert!(first.is_none(), "piece {piece}: first difference (seen, expected): {first:?}");
        }
    }

    /// Lines of a live input (each read returns one line, and the next one only comes once
    /// the one before was ingested) reach the ingesting side one at a time.
    #[test]
    fn lines_of_a_live_input_are_ingested_as_they_come() {
        use std::sync::atomic::AtomicU64;
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        struct Live {
            sent: u64,
            ingested: Arc<AtomicU64>,
        }
        impl Read for Live {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.sent == 5 {
                    return Ok(0);
                }
                let asked = Instant::now();
                while self.ingested.load(Ordering::SeqCst) < self.sent {
                    if asked.elapsed() > Duration::from_secs(10) {
                        return Err(io::Error::other(format!("line {} was never ingested", self.sent)));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                self.sent += 1;
                let line = format!(
                    r#"{{"type":"request","timestamp":1700000000000,"app":"a","app_version":"{}"}}"#,
                    self.sent
                );
                let line = format!("{line}\n");
                buf[..line.len()].copy_from_slice(line.as_bytes());
                Ok(line.len())
            }
        }
        let ingested = Arc::new(AtomicU64::new(0));
        let reader = Box::new(Live { sent: 0, ingested: Arc::clone(&ingested) });
        let seen = with_blocks(reader, |blocks| {
            let mut seen = Vec::new();
            while let Some(mut block) = blocks.next()? {
                block.each(|n, _, ev| {
                    assert!(ev.is_ok(), "line {n}");
                    seen.push(n);
                    ingested.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, io::Error>(())
                })?;
                blocks.give_back(block);
            }
            Ok(seen)
        })
        .expect("every line is ingested before the next is read");
        assert_eq!(seen, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn an_empty_input_gives_no_block() {
        let (seen, lines, bytes) = read_all(b"", 10);
        assert_eq!((seen.len(), lines, bytes), (0, 0, 0));
    }

    #[test]
    fn a_read_error_reaches_the_ingesting_side() {
        struct Failing(bool);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    return Err(io::Error::other("disk on fire"));
                }
                let line = b"{\"type\":\"request\"}\n";
                buf[..line.len()].copy_from_slice(line);
                Ok(line.len())
            }
        }
        let err = with_blocks(Box::new(Failing(false)), |blocks| {
            while let Some(block) = blocks.next()? {
                blocks.give_back(block);
            }
            Ok(())
        })
        .expect_err("the error is reported");
        assert_eq!(err.to_string(), "disk on fire");
    }
}
