//! Every row of the failure table, and every source of failure mapped to its row.

use super::*;

fn turn_failure(kind: FailureKind) -> EdgeFailure {
    EdgeFailure::from(Failure {
        kind,
        message: "why".into(),
    })
}

#[test]
fn every_failure_worth_retrying_is_a_503_with_retry_after() {
    for reason in Reason::ALL {
        let row = reason.row();
        let retry = row.status == StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(row.retry_after.is_some(), retry, "{reason:?}");
    }
    let broker_down = EdgeFailure::from(SubmitError::Unavailable);
    assert_eq!(broker_down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(broker_down.retry_after, Some(5));
    assert_eq!(
        EdgeFailure::from(SubmitError::QueueFull).retry_after,
        Some(1)
    );
    for kind in [
        FailureKind::BrokerLost,
        FailureKind::Worker(ErrorCode::Interrupted),
    ] {
        let failure = turn_failure(kind.clone());
        assert_eq!(
            failure.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{kind:?}"
        );
        assert!(failure.retry_after.is_some(), "{kind:?}");
    }
}

#[test]
fn turn_failures_keep_their_message_and_map_to_gateway_statuses() {
    let status_of = |kind| turn_failure(kind).status();
    assert_eq!(status_of(FailureKind::Timeout), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        status_of(FailureKind::Worker(ErrorCode::DeadlineExceeded)),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        status_of(FailureKind::Worker(ErrorCode::ModelTimeout)),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        status_of(FailureKind::Worker(ErrorCode::Cancelled)),
        StatusCode::CONFLICT
    );
    assert_eq!(
        status_of(FailureKind::Worker(ErrorCode::BadJob)),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(turn_failure(FailureKind::Timeout).message, "why");
}

#[test]
fn a_rate_limit_retries_after_its_wait_and_a_body_error_names_the_body() {
    let limited = EdgeFailure::from(AuthError::RateLimited { retry_after: 42 });
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.retry_after, Some(42));
    let too_large = EdgeFailure::from(BodyError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: "big".into(),
    });
    assert_eq!(too_large.reason, Reason::PayloadTooLarge);
    assert_eq!(too_large.field.as_deref(), Some("body"));
}

#[test]
fn an_unreachable_database_is_unavailable_and_an_answering_one_internal() {
    let down = DatabaseError {
        kind: DatabaseFailure::Unreachable,
        detail: "connection refused".into(),
    };
    assert_eq!(EdgeFailure::from(down).reason, Reason::Unavailable);
    let broken = DatabaseError {
        kind: DatabaseFailure::Refused,
        detail: "database \"x\" does not exist".into(),
    };
    let failure = EdgeFailure::from(broken);
    assert_eq!(failure.reason, Reason::Internal);
    assert!(!failure.message.contains("does not exist"), "never shown");
    let cannot_connect =
        deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Create);
    assert_eq!(
        DatabaseError::from(cannot_connect).kind,
        DatabaseFailure::Unreachable
    );
}

#[test]
fn a_pool_wait_that_times_out_is_a_503_with_retry_after_not_a_500() {
    let timeout = deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait);
    let failure = EdgeFailure::from(timeout);
    assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(failure.retry_after.is_some());
    let busy = EdgeFailure::from(HeavyWritesBusy);
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(busy.retry_after.is_some());
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    // Port 1: nothing listens there, so the connection is refused at once.
    let refused = tokio_postgres::connect(
        "host=127.0.0.1 port=1 user=confab connect_timeout=2",
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .map(DatabaseError::from);
    assert!(refused.is_some_and(|error| error.kind == DatabaseFailure::Unreachable));
}

#[test]
fn the_response_carries_retry_after_only_when_there_is_one() {
    let response = error_response(StatusCode::SERVICE_UNAVAILABLE, Value::Null, Some(5));
    assert_eq!(response.headers()[RETRY_AFTER], "5");
    let response = error_response(StatusCode::NOT_FOUND, Value::Null, None);
    assert!(response.headers().get(RETRY_AFTER).is_none());
}
