import Foundation

/// What a run says while it works: notices, warnings, progress. The CLI prints them; tests and
/// library users may collect or ignore them.
public protocol RunObserver: AnyObject {
    func notice(_ text: String)
    func warning(_ text: String)
    /// `done` of `total` images of the phase `label`.
    func progress(_ label: String, done: Int, total: Int)
    /// The phase whose progress was being shown has ended.
    func progressEnded()
}
/// An observer that keeps what it is told (for tests and for callers that print later).
public final class CollectingObserver: RunObserver {
    public private(set) var notices: [String] = [], warnings: [String] = []
    public init() {}
    public func notice(_ text: String) { notices.append(text) }
    public func warning(_ text: String) { warnings.append(text) }
    public func progress(_ label: String, done: Int, total: Int) {}
    public func progressEnded() {}
}
/// A request to stop a run between two batches (the CLI sets it on the first Ctrl-C).
public final class Cancellation: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false
    public init() {}
    public func cancel() { lock.lock(); requested = true; lock.unlock() }
    public var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return requested }
}

/// The metadata every report records about how it was made, and how the run is observed and
/// stopped.
public struct RunContext {
    public var commandLine: String
    public var observer: RunObserver
    /// Checked before every batch; a cancelled run throws `LensError.cancelled` and writes nothing.
    public var cancellation: Cancellation?
    public init(commandLine: String, observer: RunObserver, cancellation: Cancellation? = nil) {
        self.commandLine = commandLine
        self.observer = observer
        self.cancellation = cancellation
    }

    func checkCancelled() throws {
        if cancellation?.isCancelled == true { throw LensError.cancelled }
    }
    /// How the report was made, as it records it.
    var run: RunRecord { RunRecord(commandLine: commandLine) }
}
