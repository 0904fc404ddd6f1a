"""Faces in photos and videos: detection, crops, tracking, drawing, and the Recognizer."""
