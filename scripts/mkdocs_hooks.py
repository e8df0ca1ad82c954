"""MkDocs hooks of r1's documentation site: the configuration page gets the reference that
`r1.cli.reference` writes from the config models, at build time."""

MARKER = "<!-- r1:config-reference -->"


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    from r1.cli.reference import config_reference

    return markdown.replace(MARKER, config_reference())
