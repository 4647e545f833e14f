"""Tag touchpoint events and feedback comments with MOT step, ABC facet and PZB dimensions.

    >>> from pipelines.playbook import load_playbook
    >>> tagger = Tagger(load_playbook("bank_branch"))
    >>> tagger.tag_moment(None, "柜员服务不专业", None).pzb_tags
    [{'dimension': 'assurance', 'polarity': 'negative'}]

One entry point, `Tagger(playbook)`, serves the Beam transforms (`tag_events`, `tag_feedback`) and
`motpipe eval-tagging` (`tag_moment`, `tag_comment`). The rules are documented in docs/tagging.md.
"""
from pipelines.tagging.tagger import Tagger
from pipelines.tagging.types import MomentTags

__all__ = ["MomentTags", "Tagger"]
