//! Producing a record while librdkafka's local queue may be full.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, Partitioner, ProducerContext};

/// How long the producer is polled between tries: serving delivery reports is what frees
/// room in the queue.
const POLL: Duration = Duration::from_millis(10);

/// Sends `record`, trying again for up to `wait` while the producer's local queue is full.
///
/// A full queue empties as the broker acknowledges messages, and a `BaseProducer` releases
/// them only when polled, so the producer is polled between tries. Any other error is
/// returned at once; a queue still full after `wait` is returned as
/// `MessageProduction(QueueFull)`.
pub fn send_retrying<K, P, C, Part>(
    producer: &BaseProducer<C, Part>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
    wait: Duration,
) -> Result<(), KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    // A wait too long to be an instant is no limit.
    let deadline = Instant::now().checked_add(wait);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                if deadline.is_none_or(|d| Instant::now() < d) =>
            {
                record = r;
                producer.poll(POLL);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;

    fn producer(queue: &str) -> BaseProducer {
        // No broker at this address: nothing is ever acknowledged, so the queue stays full.
        ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("queue.buffering.max.messages", queue)
            .set("message.timeout.ms", "600000")
            .create()
            .expect("producer from a fixed config")
    }

    #[test]
    fn a_full_queue_is_waited_on_for_the_given_time_only() {
        let p = producer("1");
        assert!(send_retrying(&p, BaseRecord::<(), [u8]>::to("t").payload(b"a"), Duration::ZERO).is_ok());
        let t0 = Instant::now();
        let full = send_retrying(&p, BaseRecord::<(), [u8]>::to("t").payload(b"b"), Duration::from_millis(200));
        assert!(matches!(full, Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))), "{full:?}");
        assert!(t0.elapsed() >= Duration::from_millis(200), "gave up after {:?}", t0.elapsed());
        assert!(t0.elapsed() < Duration::from_secs(5), "waited {:?}", t0.elapsed());
    }

    #[test]
    fn other_errors_are_returned_at_once() {
        let p = producer("10");
        let big = vec![0u8; 2_000_000];
        let t0 = Instant::now();
        let err = send_retrying(&p, BaseRecord::<(), [u8]>::to("t").payload(&big), Duration::from_secs(60));
        assert!(matches!(err, Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))), "{err:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
