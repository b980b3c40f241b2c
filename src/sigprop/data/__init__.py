"""Data preparation for sigprop (IWSLT'14 German-English, see :mod:`sigprop.data.iwslt`)."""
