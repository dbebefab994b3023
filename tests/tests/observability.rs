//! What the outbox tells an operator while it runs: metrics through the `metrics` crate's
//! facade (read back with its debugging recorder) and the tracing spans of a drain (read
//! back with a subscriber that records them), on every backend.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Duration;
use diesel_outbox::drain::{Exhaustion, MetricsFacade};
use diesel_outbox::testing::ManualClock;
use diesel_outbox::{CellOutbox, Error, Outbox, OutboxMessage, Receivers};
use diesel_outbox_tests::{backend_tests, TestConnection};
use metrics::{SharedString, Unit};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
        ProjectUpdate = 2 { scope: Organization, silo: cell },
    }
}

/// Receivers: organization updates succeed, project updates fail.
fn receivers<C: TestConnection>() -> Receivers<C> {
    Receivers::new()
        .cell(
            Category::OrganizationUpdate,
            |_conn: &mut C, _message: &OutboxMessage| Ok::<_, Error>(()),
        )
        .cell(
            Category::ProjectUpdate,
            |_conn: &mut C, _message: &OutboxMessage| Err("the project service is down"),
        )
}

fn org(shard: i64, object: i64) -> CellOutbox {
    CellOutbox::new(Category::OrganizationUpdate, shard, object)
}

/// A debugging recorder's snapshot.
type Snapshot = [(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)];

/// The value of the metric `name` of `kind` with exactly `labels`.
fn value<'s>(
    snapshot: &'s Snapshot,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'s DebugValue> {
    snapshot
        .iter()
        .find(|(key, _, _, _)| {
            let metric = key.key();
            let mut found: Vec<(&str, &str)> = metric
                .labels()
                .map(|label| (label.key(), label.value()))
                .collect();
            let mut wanted = labels.to_vec();
            found.sort_unstable();
            wanted.sort_unstable();
            key.kind() == kind && metric.name() == name && found == wanted
        })
        .map(|entry| &entry.3)
}

fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    match value(snapshot, MetricKind::Counter, name, labels) {
        Some(DebugValue::Counter(count)) => Some(*count),
        _ => None,
    }
}

fn gauge(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match value(snapshot, MetricKind::Gauge, name, labels) {
        Some(DebugValue::Gauge(level)) => Some(level.into_inner()),
        _ => None,
    }
}

fn histogram(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    match value(snapshot, MetricKind::Histogram, name, labels) {
        Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.into_inner()).collect(),
        _ => Vec::new(),
    }
}

const CELL: (&str, &str) = ("table", "cell_outboxes");
const ORG: (&str, &str) = ("category", "OrganizationUpdate");
const PROJECT: (&str, &str) = ("category", "ProjectUpdate");

fn metrics_report_through_the_facade_with_sentrys_names<C: TestConnection>(conn: &mut C) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A local recorder: this thread's metrics only, so tests run in parallel.
    metrics::with_local_recorder(&recorder, || {
        let clock = ManualClock::starting_now();
        let outbox = Outbox::builder(receivers())
            .clock(clock.clone())
            .flush_on_commit(false)
            .metrics(MetricsFacade::new().category_names(Category::ALL))
            .exhaustion(
                Category::ProjectUpdate,
                Exhaustion::Park { max_attempts: 2 },
            )
            .build();
        outbox
            .context(conn, |ctx| {
                ctx.write(org(1, 1))?;
                ctx.write(org(1, 2))?;
                ctx.write(CellOutbox::new(Category::ProjectUpdate, 2, 20))
            })
            .expect("commits");
        clock.advance(Duration::seconds(3));
        outbox
            .context(conn, |ctx| ctx.write(org(1, 1)))
            .expect("commits");
        clock.advance(Duration::seconds(2));
        outbox.report_status(conn).expect("reports");
        // A snapshot takes the values recorded since the last one.
        let written = snapshotter.snapshot().into_vec();
        assert_eq!(counter(&written, "outbox.saved", &[CELL, ORG]), Some(3));
        assert_eq!(counter(&written, "outbox.saved", &[CELL, PROJECT]), Some(1));
        assert_eq!(gauge(&written, "outbox.depth", &[CELL, ORG]), Some(3.0));
        assert_eq!(
            gauge(&written, "outbox.maximum_shard_depth", &[CELL]),
            Some(3.0)
        );
        assert_eq!(gauge(&written, "outbox.delivery_lag", &[CELL]), Some(5.0));

        outbox.drain_due_shards(conn).expect("drains");
        clock.advance(Duration::hours(1));
        outbox.drain_due_shards(conn).expect("drains");
        outbox.report_status(conn).expect("reports");
    });
    let snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(
        counter(&snapshot, "outbox.processed", &[CELL, ORG]),
        Some(3),
        "coalesced rows count as processed"
    );
    let mut lags = histogram(&snapshot, "outbox.processing_lag", &[CELL, ORG]);
    lags.sort_by(f64::total_cmp);
    assert_eq!(lags, vec![2.0, 5.0], "from the delivered (newest) row");
    let mut queued = histogram(&snapshot, "outbox.coalesced_net_queue_time", &[CELL, ORG]);
    queued.sort_by(f64::total_cmp);
    assert_eq!(queued, vec![5.0, 5.0], "from each group's oldest row");
    assert_eq!(
        counter(&snapshot, "outbox.delivery_failed", &[CELL, PROJECT]),
        Some(2)
    );
    assert_eq!(
        counter(&snapshot, "outbox.parked", &[CELL, PROJECT]),
        Some(1)
    );
    assert_eq!(
        gauge(&snapshot, "outbox.depth", &[CELL, ORG]),
        Some(0.0),
        "a category that emptied is reported as zero"
    );
    assert_eq!(gauge(&snapshot, "outbox.parked_rows", &[CELL]), Some(1.0));
    assert_eq!(gauge(&snapshot, "outbox.stuck_shards", &[CELL]), Some(0.0));
}

/// A span or event as recorded: its name (or message), fields, and its parent span's name.
#[derive(Clone, Debug)]
struct Recorded {
    name: String,
    fields: Vec<(String, String)>,
    parent: Option<String>,
}

impl Recorded {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

/// Records every span and event of the threads that asked for it (see [`recording`]).
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<Recorded>>>,
    events: Arc<Mutex<Vec<Recorded>>>,
}

thread_local! {
    /// Where this thread's spans and events go, while it records.
    static RECORDING: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Sends each thread's spans and events to its [`RECORDING`].
struct ThreadRecorder;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ThreadRecorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(recorder) = RECORDING.with(|recording| recording.borrow().clone()) else {
            return;
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.name().to_owned());
        recorder.spans.lock().expect("spans").push(Recorded {
            name: attrs.metadata().name().to_owned(),
            fields: fields.0,
            parent,
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(recorder) = RECORDING.with(|recording| recording.borrow().clone()) else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields
            .0
            .iter()
            .find(|(field, _)| field == "message")
            .map(|(_, message)| message.clone())
            .unwrap_or_default();
        let parent = ctx.event_span(event).map(|span| span.name().to_owned());
        recorder.events.lock().expect("events").push(Recorded {
            name: message,
            fields: fields.0,
            parent,
        });
    }
}

/// Runs `f` recording this thread's spans and events. The subscriber is global, installed
/// once: tracing caches whether a callsite is enabled across threads, so a subscriber set
/// for one thread only misses the callsites another test's thread reached first.
fn recording(f: impl FnOnce()) -> Recorder {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(ThreadRecorder);
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    });
    let recorder = Recorder::default();
    RECORDING.with(|recording| *recording.borrow_mut() = Some(recorder.clone()));
    f();
    RECORDING.with(|recording| *recording.borrow_mut() = None);
    recorder
}

fn a_drain_is_traced_table_batch_and_receiver_call<C: TestConnection>(conn: &mut C) {
    let recorder = recording(|| {
        let outbox = Outbox::builder(receivers())
            .exhaustion(
                Category::ProjectUpdate,
                Exhaustion::Park { max_attempts: 1 },
            )
            .build();
        outbox
            .context(conn, |ctx| {
                ctx.write(org(1, 1))?;
                ctx.write(org(1, 2))
            })
            .expect("commits and flushes");
        outbox
            .context(conn, |ctx| {
                ctx.set_flush(false);
                ctx.write(CellOutbox::new(Category::ProjectUpdate, 2, 20))
            })
            .expect("commits");
        outbox.drain_due_shards(conn).expect("drains");
    });

    let spans = recorder.spans.lock().expect("spans").clone();
    let named = |name: &str| -> Vec<Recorded> {
        spans
            .iter()
            .filter(|span| span.name == name)
            .cloned()
            .collect()
    };
    let flush = named("outbox.flush");
    assert_eq!(flush.len(), 1);
    assert_eq!(flush[0].field("shards"), Some("1"));
    let drains = named("outbox.drain");
    assert_eq!(
        drains
            .iter()
            .map(|span| span.field("table").unwrap_or_default())
            .collect::<Vec<_>>(),
        vec!["cell_outboxes", "control_outboxes"]
    );
    let batches = named("outbox.batch");
    assert_eq!(
        batches
            .iter()
            .map(|span| (span.parent.as_deref(), span.field("shards")))
            .collect::<Vec<_>>(),
        vec![
            (Some("outbox.flush"), Some("1")),
            (Some("outbox.drain"), Some("1"))
        ],
        "the flush's batch, then the drain's"
    );
    let deliveries = named("outbox.deliver");
    let calls: Vec<(Option<&str>, Option<&str>, Option<&str>)> = deliveries
        .iter()
        .map(|span| {
            (
                span.parent.as_deref(),
                span.field("category"),
                span.field("keys"),
            )
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            (Some("outbox.batch"), Some("OrganizationUpdate"), Some("1")),
            (Some("outbox.batch"), Some("OrganizationUpdate"), Some("1")),
            (Some("outbox.batch"), Some("ProjectUpdate"), Some("1")),
        ]
    );

    let events = recorder.events.lock().expect("events").clone();
    let parked = events
        .iter()
        .find(|event| event.name.contains("parked"))
        .expect("the parked key is logged");
    assert_eq!(parked.parent.as_deref(), Some("outbox.batch"));
    assert_eq!(parked.field("category"), Some("2"));
    assert_eq!(parked.field("object"), Some("20"));
    assert!(parked
        .field("error")
        .is_some_and(|error| error.contains("the project service is down")));
}

backend_tests!(
    metrics_report_through_the_facade_with_sentrys_names,
    a_drain_is_traced_table_batch_and_receiver_call,
);
