"""Graphs: MediaPipe-style graph.pbtxt definitions served as KServe v2 models (OVMS `mediapipe_config_list`)."""
