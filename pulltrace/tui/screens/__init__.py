"""The screens of ``watch``: the pull list, one pull's detail, and help."""
