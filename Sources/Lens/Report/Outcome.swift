import Foundation

/// What a run gives: a report, or (with a shard) the partial sums that `merge` combines.
public enum Outcome<Result> {
    case report(Result)
    case partial(Partial)
}
