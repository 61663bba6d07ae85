"""The load side of `movctl bench`: simulated devices over MQTT/TLS, and the status points their readings cause."""
