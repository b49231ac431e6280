import Foundation

/// A small line/scatter chart written as SVG text: one or more series of (x, y) points, linear axes (x optionally
/// logarithmic), ticks, labels and a legend. Enough for eval reports; no dependencies.
public struct SVGChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        /// Optional error bars: (low, high) per point.
        public var intervals: [(Double, Double)]?
        /// Join the points with a line (off: a scatter of dots).
        public var connected: Bool
        /// Dot radius in pixels.
        public var radius: Double
        public init(name: String, points: [(x: Double, y: Double)], intervals: [(Double, Double)]? = nil, connected: Bool = true,
                    radius: Double = 4) {
            self.name = name
            self.points = points
            self.intervals = intervals
            self.connected = connected
            self.radius = radius
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var logX = false
    /// Points are labelled with these strings when given (e.g. model names on a size chart).
    public var pointLabels: [[String]]?
    public var yRange: ClosedRange<Double>?
    public var width = 720.0, height = 440.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func format(_ v: Double) -> String {
        let a = abs(v)
        if a == 0 { return "0" }
        if a >= 1e6 { return String(format: "%.3gM", v / 1e6) }
        if a >= 1e4 { return String(format: "%.3gk", v / 1e3) }
        if a >= 100 { return String(format: "%.0f", v) }
        if a >= 1 { return String(format: "%.3g", v) }
        return String(format: "%.3g", v)
    }

    /// "Nice" tick values covering [lo, hi] (1, 2, 5 × 10^n steps).
    static func ticks(_ lo: Double, _ hi: Double, count: Int = 6) -> [Double] {
        guard hi > lo else { return [lo] }
        let raw = (hi - lo) / Double(count)
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        var t = ceil(lo / step) * step
        var out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    public func render() -> String {
        let left = 80.0, right = 180.0, top = 50.0, bottom = 60.0
        let plotW = width - left - right, plotH = height - top - bottom
        let all = series.flatMap { $0.points }
        let xs = all.map { logX ? log10(max($0.x, 1e-300)) : $0.x }
        var ys = all.map { $0.y }
        for s in series { for i in s.intervals ?? [] { ys += [i.0, i.1] } }
        var xLo = xs.min() ?? 0, xHi = xs.max() ?? 1
        if xHi - xLo < 1e-12 { xLo -= 0.5; xHi += 0.5 }
        let pad = (xHi - xLo) * 0.06
        xLo -= pad; xHi += pad
        var yLo = yRange?.lowerBound ?? min(0, ys.min() ?? 0), yHi = yRange?.upperBound ?? (ys.max() ?? 1)
        if yHi - yLo < 1e-12 { yHi = yLo + 1 }
        if yRange == nil { yHi += (yHi - yLo) * 0.08 }
        func px(_ x: Double) -> Double { left + ((logX ? log10(max(x, 1e-300)) : x) - xLo) / (xHi - xLo) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (y - yLo) / (yHi - yLo) * plotH }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left + plotW / 2)" y="24" text-anchor="middle" font-size="15">\(Self.escape(title))</text>
        <rect x="\(left)" y="\(top)" width="\(plotW)" height="\(plotH)" fill="none" stroke="#333"/>

        """
        for t in Self.ticks(yLo, yHi) {
            let y = py(t)
            s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(left + plotW)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(Self.format(t))</text>\n"
        }
        let xTicks: [Double]
        if logX {
            let lo = Int(floor(xLo)), hi = Int(ceil(xHi))
            var v: [Double] = []
            for e in lo ... hi { for m in [1.0, 2, 5] { let x = m * pow(10, Double(e)); if log10(x) >= xLo && log10(x) <= xHi { v.append(x) } } }
            xTicks = v
        } else {
            xTicks = Self.ticks(xLo, xHi)
        }
        for t in xTicks {
            let x = px(t)
            s += "<line x1=\"\(x)\" y1=\"\(top)\" x2=\"\(x)\" y2=\"\(top + plotH)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(x)\" y=\"\(top + plotH + 18)\" text-anchor=\"middle\">\(Self.format(t))</text>\n"
        }
        s += "<text x=\"\(left + plotW / 2)\" y=\"\(height - 14)\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        s += "<text transform=\"translate(18 \(top + plotH / 2)) rotate(-90)\" text-anchor=\"middle\">\(Self.escape(yLabel))</text>\n"
        for (i, ser) in series.enumerated() {
            let c = Self.colors[i % Self.colors.count]
            let pts = ser.points.map { "\(px($0.x)),\(py($0.y))" }.joined(separator: " ")
            if ser.connected && ser.points.count > 1 { s += "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\"/>\n" }
            for (j, p) in ser.points.enumerated() {
                if let iv = ser.intervals?[j] {
                    s += "<line x1=\"\(px(p.x))\" y1=\"\(py(iv.0))\" x2=\"\(px(p.x))\" y2=\"\(py(iv.1))\" stroke=\"\(c)\"/>"
                }
                s += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"\(ser.radius)\" fill=\"\(c)\"/>"
                if let labels = pointLabels, i < labels.count, j < labels[i].count {
                    s += "<text x=\"\(px(p.x) + 6)\" y=\"\(py(p.y) - 6)\" font-size=\"10\">\(Self.escape(labels[i][j]))</text>"
                }
                s += "\n"
            }
            let ly = top + 16 + Double(i) * 18
            s += "<rect x=\"\(left + plotW + 12)\" y=\"\(ly - 9)\" width=\"12\" height=\"12\" fill=\"\(c)\"/>"
            s += "<text x=\"\(left + plotW + 30)\" y=\"\(ly + 1)\">\(Self.escape(String(ser.name.prefix(22))))</text>\n"
        }
        s += "</svg>\n"
        return s
    }
}
