"""Browser tests of the adjuster maps (Playwright, Debian's chromium)."""
