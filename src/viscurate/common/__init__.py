"""Small pieces every layer shares, importing nothing of viscurate above ``errors``: box geometry,
vector helpers, the machine's cores. The lowest layer (docs/architecture.md)."""
