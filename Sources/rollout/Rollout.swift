import ArgumentParser
@main struct Rollout: ParsableCommand {}
