"""Point the site's Colab launch button at the Colab edition of each notebook.

sphinx-book-theme 1.3 builds the button's link as
`{colab_url}/github/{org}/{repo}/blob/{branch}/{path of the page}`, with no option
to change the path. Colab renders no MyST, so a chapter opened from
`notebooks/02_cnn.ipynb` shows raw markup and every solution at once; its plain-
Markdown copy `colab/02_cnn.ipynb` (written by `tools/colab_edition.py`) does not.
This runs after the theme has made its launch buttons and rewrites that one link.
"""

from __future__ import annotations

import re

NOTEBOOKS, EDITION = "notebooks", "colab"  # tools/colab_edition.py writes notebooks/X.ipynb to colab/X.ipynb


def _to_edition(url: str) -> str:
    return re.sub(rf"/{NOTEBOOKS}/([^/]+\.ipynb)$", rf"/{EDITION}/\1", url)


def _retarget_colab_button(app, pagename, templatename, context, doctree):
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if button.get("text") == "Colab":
                button["url"] = _to_edition(button["url"])


def setup(app):
    # sphinx-book-theme adds its launch buttons at priority 501; run after it.
    app.connect("html-page-context", _retarget_colab_button, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
