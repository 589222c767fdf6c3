"""Files in and out, beneath every other layer: one-line errors, atomic outputs, images, text files and params."""
