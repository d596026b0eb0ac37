"""What a person sees of a net: summaries (text, HTML), the summary graphic, Information."""
