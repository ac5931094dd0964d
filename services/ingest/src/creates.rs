//! Creating a schedule exactly once across every ingest instance (`POST /jobs/schedule`).

use std::time::Duration;

use scanstream_contracts::schedule::Schedule;
use scanstream_contracts::{Topic, TopicNames};
use scanstream_platform::http::{Problem, RequestContext};
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::shutdown::Tasks;
use scanstream_platform::writer::{OnFatal, Record, Target, Writer, WriterConfig};
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, encode};
use crate::schedules::{Schedules, stored, sync};

/// What creating a schedule exactly once across every ingest instance needs: a transactional
/// producer per schedule name (see [`create_once`]).
pub struct Creator {
    /// Producer settings with the write deadline.
    pub factory: KafkaFactory,
    pub names: TopicNames,
    /// `<topic prefix><client id>-ingest-schedule-`, followed by the schedule's name.
    pub transactional_prefix: String,
    pub write_timeout: Duration,
    /// Creates on this instance take turns: only creates on other instances race.
    pub turn: tokio::sync::Mutex<()>,
}

/// Tries of one create before it answers 503: each lost only to a concurrent create of the same
/// name on another instance, which then is found and answered with 409.
const CREATE_TRIES: u32 = 8;

/// Writes `schedule` unless one of its name exists: `Ok(false)` then. Exactly one of any number
/// of concurrent creates of a name, on any ingest instance, writes it. Each create holds a
/// transactional producer whose id is the schedule's name; initializing it fences every other
/// create of that name (aborting its open transaction), and only then is the topic read to its
/// end and the schedule written, in a transaction that commits only if no later create fenced
/// it in turn. A fenced create tries again and then finds the winner's record.
pub(crate) async fn create_once(
    state: &AppState,
    schedules: &Schedules,
    context: &RequestContext,
    schedule: &Schedule,
) -> Result<bool, Problem> {
    let creator = &schedules.creator;
    let name = schedule.name.as_str();
    let payload = Some(encode(state, Topic::Schedules, schedule).await?);
    let _turn = creator.turn.lock().await;
    for tries in 1..=CREATE_TRIES {
        // Found without fencing anyone: the usual answer for all but the first.
        if stored(state, schedules, name).await?.is_some() {
            return Ok(false);
        }
        let stop = CancellationToken::new();
        let (writer, tasks) = Writer::start(
            creator.factory.clone(),
            state.codec.clone(),
            creator.names.clone(),
            WriterConfig {
                role: ClientRole::Ingest,
                transactional_id: format!("{}{name}", creator.transactional_prefix),
                exact_id: true,
                on_fatal: OnFatal::Stop,
                writers: 1,
                max_requests: 1,
                linger: Duration::ZERO,
                write_timeout: creator.write_timeout,
                queue_capacity: 1,
            },
            stop.clone(),
        );
        let tasks = Tasks::new(stop, tasks);
        let deadline = std::time::Instant::now() + creator.write_timeout;
        while !writer.ready() && !writer.stopped() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let outcome = if writer.ready() {
            match stored(state, schedules, name).await {
                Ok(Some(_)) => Ok(Some(false)),
                Ok(None) => {
                    let written = writer
                        .write(vec![Record {
                            topic: Topic::Schedules,
                            key: name.to_owned(),
                            payload: payload.clone(),
                            target: Target::Keyed,
                            traceparent: context.traceparent.clone(),
                            correlation_id: context.correlation_id.clone(),
                        }])
                        .await;
                    match written {
                        Ok(()) => Ok(Some(true)),
                        Err(e) => {
                            tracing::debug!(schedule = name, tries, error = %e, "create lost to a concurrent one; trying again");
                            Ok(None)
                        }
                    }
                }
                Err(problem) => Err(problem),
            }
        } else {
            Ok(None)
        };
        tasks.stop().await;
        match outcome {
            Ok(Some(created)) => {
                if created {
                    // Read your write: the table shows it before the answer.
                    let _ = sync(state, schedules).await;
                }
                return Ok(created);
            }
            Ok(None) => {
                // Back off with jitter, so racing instances stop fencing each other.
                let ceiling = 25u64 << tries.min(6);
                let pause = u64::from(uuid::Uuid::new_v4().as_u128() as u16) % ceiling;
                tokio::time::sleep(Duration::from_millis(pause + 10)).await;
            }
            Err(problem) => return Err(problem),
        }
    }
    Err(Problem::unavailable(
        format!(
            "the schedule {name} could not be created now (Kafka did not commit it); retry later"
        ),
        state.settings.retry_after.as_secs(),
    ))
}
