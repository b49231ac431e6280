#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A progress bar with rate and ETA on stderr. Silent unless stderr is a terminal and the
/// caller did not ask for quiet (e.g. `--json`).
public final class ProgressBar {
    public let total: Int
    public let label: String
    public let enabled: Bool
    private var done = 0
    private let start = Date()
    private var lastDraw = Date.distantPast

    public init(total: Int, label: String, quiet: Bool = false) {
        self.total = max(total, 1)
        self.label = label
        self.enabled = !quiet && isatty(2) == 1
    }

    public func advance(by n: Int = 1) { update(done + n) }

    public func update(_ value: Int) {
        done = min(value, total)
        guard enabled else { return }
        let now = Date()
        if done < total && now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        draw(now: now)
    }

    public func finish() {
        guard enabled else { return }
        done = total
        draw(now: Date())
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw(now: Date) {
        let elapsed = now.timeIntervalSince(start)
        let fraction = Double(done) / Double(total)
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        var eta = "--:--"
        if done > 0 && done < total {
            eta = Self.clock(elapsed / fraction - elapsed)
        } else if done >= total {
            eta = Self.clock(elapsed)
        }
        let line = "\r\(label) \(bar) \(done)/\(total) \(Int(fraction * 100))% ETA \(eta)  "
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func clock(_ seconds: Double) -> String {
        let s = max(0, Int(seconds.rounded()))
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
                         : String(format: "%02d:%02d", s / 60, s % 60)
    }
}
