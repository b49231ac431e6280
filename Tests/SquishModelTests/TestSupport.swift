// The helpers every test target shares (Tests/SquishTestSupport).
@_exported import SquishTestSupport
