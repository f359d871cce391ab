"""Small fixes to the generated site, as a local Sphinx extension.

sphinx-thebe 0.3.1 registers its inline configuration script twice under
Jupyter Book 1, so every page declares `const THEBE_JS_URL` twice and the
browser reports "Identifier 'THEBE_JS_URL' has already been declared".
We drop exact duplicate scripts from each page before it is written.
"""


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # The same inline script is registered once with filename None and once with ''.
        filename = getattr(script, "filename", script) or ""
        key = (str(filename), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
