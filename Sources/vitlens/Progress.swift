import Foundation

/// A progress line on stderr (images done, images/s, ETA), redrawn in place; only on a terminal.
final class Progress {
    let label: String
    let total: Int
    let enabled: Bool
    let start = Date()
    private var last = Date.distantPast

    init(_ label: String, total: Int, quiet: Bool) {
        self.label = label
        self.total = total
        enabled = !quiet && isatty(2) != 0
    }

    func update(_ done: Int) {
        guard enabled else { return }
        let now = Date()
        guard done == total || now.timeIntervalSince(last) > 0.2 else { return }
        last = now
        let t = now.timeIntervalSince(start)
        let rate = t > 0 ? Double(done) / t : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let line = String(format: "\r%@: %d/%d images, %.1f img/s, ETA %@   ", label, done, total, rate, Progress.duration(eta))
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }

    static func duration(_ s: Double) -> String {
        let x = Int(s.rounded())
        return x >= 3600 ? "\(x / 3600)h\(x % 3600 / 60)m" : x >= 60 ? "\(x / 60)m\(x % 60)s" : "\(x)s"
    }
}
