/// Time since an instant as a plain number, for timings that are printed or stored.
extension ContinuousClock.Instant {
    /// Milliseconds from this instant to now.
    public var millisecondsSince: Double { secondsSince * 1000 }

    /// Seconds from this instant to now.
    public var secondsSince: Double {
        let d = ContinuousClock.now - self
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
