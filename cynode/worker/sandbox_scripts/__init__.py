"""Scripts baked into the sandbox image (stdlib-only Python 3); the directory is the image build context."""
