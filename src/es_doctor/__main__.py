from es_doctor.cli.main import run

if __name__ == "__main__":
    run()
