"""The domain of Scanbench: challenges, phases, data, submissions, evaluations, leaderboards."""
